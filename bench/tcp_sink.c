/* bench/net_bench.py's server: accepts connections on PORT one after another, reads each to
 * EOF, answers with the byte count (8 bytes, big-endian) and closes. Usage: tcp_sink PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[1 << 20];

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tcp_sink PORT\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 16) < 0) {
        perror("tcp_sink");
        return 1;
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        uint64_t total = 0;
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            total += (uint64_t)n;
        unsigned char out[8];
        for (int i = 0; i < 8; i++)
            out[i] = (unsigned char)(total >> (56 - 8 * i));
        (void)write(c, out, sizeof out);
        close(c);
    }
}
