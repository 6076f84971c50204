/* Attempts what docker's default seccomp profile refuses (and a few things it allows) and prints
 * one "name=result" line per attempt: "ok", or the errno's name.  Built with gcc -static by
 * tests/runtime/test_seccomp.py and run inside hoist and docker containers.
 * Usage: seccomp_probe [NAME...]   (no names: every probe) */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *result(long rc) {
    static char buf[32];
    if (rc >= 0) return "ok";
    switch (errno) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    }
    snprintf(buf, sizeof buf, "errno%d", errno);
    return buf;
}

/* Runs fn in a forked child (a namespace it enters must not leak into the next probe); the
 * child's exit code carries errno (0 = ok). */
static long in_child(long (*fn)(void)) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) _exit(fn() < 0 ? errno : 0);
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    if (!WIFEXITED(status)) { errno = EINTR; return -1; }
    errno = WEXITSTATUS(status);
    return errno ? -1 : 0;
}

static long userns_mount(void) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) return -1;
    return mount("none", "/tmp", "tmpfs", 0, NULL);
}

static long unshare_user(void) { return unshare(CLONE_NEWUSER); }

static long clone_newuser(void) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
}

static long clone3_plain(void) {
    struct { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack,
             stack_size, tls; } args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long pid = syscall(435 /* clone3 */, &args, sizeof args);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
}

static long perf_open(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.exclude_kernel = 1;
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

static long add_key(void) {
    return syscall(SYS_add_key, "user", "hoist-probe", "x", 1, -2 /* process keyring */);
}

static long keyctl(void) {
    return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session keyring */, 0);
}

static void *thread_fn(void *arg) { return arg; }

static long thread(void) {
    pthread_t t;
    int rc = pthread_create(&t, NULL, thread_fn, NULL);
    if (rc) { errno = rc; return -1; }
    return pthread_join(t, NULL);
}

static long fork_plain(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
}

static long make_dir(void) { return mkdir("/tmp/seccomp-probe-dir", 0755); }
static long get_pid(void) { return getpid(); }
static long personality_query(void) { return personality(0xffffffff); }
static long personality_norandom(void) { return personality(ADDR_NO_RANDOMIZE); }

static const struct { const char *name; long (*fn)(void); int child; } probes[] = {
    {"unshare_user", unshare_user, 1},
    {"userns_mount", userns_mount, 1},
    {"clone_newuser", clone_newuser, 0},
    {"clone3", clone3_plain, 0},
    {"perf_event_open", perf_open, 0},
    {"add_key", add_key, 0},
    {"keyctl", keyctl, 0},
    {"personality_norandom", personality_norandom, 1},
    {"personality_query", personality_query, 0},
    {"getpid", get_pid, 0},
    {"fork", fork_plain, 0},
    {"thread", thread, 0},
    {"mkdir", make_dir, 0},
};

int main(int argc, char **argv) {
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        int wanted = argc == 1;
        for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], probes[i].name) == 0;
        if (!wanted) continue;
        errno = 0;
        long rc = probes[i].child ? in_child(probes[i].fn) : probes[i].fn();
        printf("%s=%s\n", probes[i].name, result(rc));
    }
    return 0;
}
