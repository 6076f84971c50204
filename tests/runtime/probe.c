/* An attacker inside a container, for tests/runtime/test_isolation_proc.py (built with gcc -static).
 *
 *   probe keyring NAME        look NAME up in the session keyring and read it; add "from-container"
 *   probe scan MARKER STOP    until the file STOP exists: for every other process, try to read its
 *                             environ (reporting MARKER), open its exe for reading and writing
 *                             (reporting a binary that is not this container's), and read its
 *                             cmdline (reporting MARKER)
 *
 * Each finding is one line; "done" ends the output.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEY_SPEC_SESSION_KEYRING -3
#define KEYCTL_SEARCH 10
#define KEYCTL_READ 11

static int keyring(const char *name) {
    long id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", name, 0);
    if (id < 0) {
        printf("search: %s\n", strerror(errno));
    } else {
        char buf[256] = {0};
        long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1);
        printf("FOUND %s\n", n >= 0 ? buf : strerror(errno));
    }
    long added = syscall(SYS_add_key, "user", "from-container", "planted", 7, KEY_SPEC_SESSION_KEYRING);
    printf("add_key: %s\n", added < 0 ? strerror(errno) : "ok");
    printf("done\n");
    return 0;
}

static ssize_t slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size);
    close(fd);
    return n;
}

static int contains(const char *buf, ssize_t n, const char *marker) {
    size_t m = strlen(marker);
    for (ssize_t i = 0; i + (ssize_t)m <= n; i++)
        if (memcmp(buf + i, marker, m) == 0)
            return 1;
    return 0;
}

static int scan(const char *marker, const char *stop) {
    struct stat own, bb;
    stat("/proc/self/exe", &own);
    stat("/bin/busybox", &bb);
    pid_t self = getpid();
    long rounds = 0;
    static char buf[1 << 16];
    while (access(stop, F_OK) != 0) {
        rounds++;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == self)
                continue;
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
            ssize_t n = slurp(path, buf, sizeof buf);
            if (n > 0 && contains(buf, n, marker))
                printf("CMDLINE %d\n", pid);
            snprintf(path, sizeof path, "/proc/%d/environ", pid);
            n = slurp(path, buf, sizeof buf);
            if (n > 0 && contains(buf, n, marker))
                printf("ENVIRON %d\n", pid);
            /* The container's own binaries are its own business; a host binary must stay out
             * of reach (stat follows the magic link only with ptrace access). */
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            struct stat st;
            if (stat(path, &st) == 0 && !(st.st_ino == own.st_ino && st.st_dev == own.st_dev) &&
                !(st.st_ino == bb.st_ino && st.st_dev == bb.st_dev)) {
                printf("EXE %d\n", pid);
                int fd = open(path, O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                    printf("EXEWRITE %d\n", pid);
                    close(fd);
                } else if (errno == ETXTBSY) {
                    printf("EXEWRITE-BUSY %d\n", pid);
                }
            }
            fflush(stdout);
        }
        if (d)
            closedir(d);
    }
    printf("rounds %ld\ndone\n", rounds);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "keyring") == 0)
        return keyring(argv[2]);
    if (argc == 4 && strcmp(argv[1], "scan") == 0)
        return scan(argv[2], argv[3]);
    fprintf(stderr, "usage: probe keyring NAME | probe scan MARKER STOPFILE\n");
    return 2;
}
