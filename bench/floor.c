/* bench/floor.c: the least a TIME server can do, the physical-limit reference for bench/sweep.
 *
 * Usage: floor [PORT]        (built and started by bench/sweep; PORT 0 or none: any free port)
 *
 * One thread, level-triggered epoll, each socket registered once, one read and one write per
 * batch of requests, the reply text made once a second. No timers, no limits, no logging, no
 * graceful shutdown: everything jam does beyond this is what its CPU time per request is
 * compared against. It answers TIME + CR LF with `JAM hh:mm:ss` + CR LF (UTC), closes after
 * QUIT, and answers anything else with an ERROR line, so `jam bench` can check every reply.
 * Prints "floor listening on 127.0.0.1:PORT;" to stderr once it listens (bench/common.py reads
 * the port from it), on loopback only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
#define LINE 64           /* the longest request kept while its end has not come */
#define REPLY_LEN 14      /* "JAM hh:mm:ss\r\n" */

struct conn {
    unsigned char len;    /* bytes of an unfinished line */
    char line[LINE];
};

static struct conn *conns[MAX_FDS];
static char reply[REPLY_LEN + 1];
static time_t reply_second = -1;

static void refresh_reply(void) {
    time_t now = time(NULL);
    if (now != reply_second) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(reply, sizeof reply, "JAM %02d:%02d:%02d\r\n", tm.tm_hour, tm.tm_min, tm.tm_sec);
        reply_second = now;
    }
}

static void drop(int fd) {
    free(conns[fd]);
    conns[fd] = NULL;
    close(fd); /* closing removes it from the epoll set */
}

/* One read, every complete line answered in one write. A client whose replies do not fit its
 * socket buffer is dropped: the benchmarks never let that happen. */
static void serve(int fd) {
    static char in[16384], out[16384 / 6 * REPLY_LEN + 64];
    struct conn *c = conns[fd];
    ssize_t n = read(fd, in, sizeof in);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return;
        drop(fd);
        return;
    }
    refresh_reply();
    size_t o = 0;
    int quit = 0;
    for (ssize_t i = 0; i < n && !quit; i++) {
        char b = in[i];
        if (b != '\n') {
            if (c->len == LINE) { drop(fd); return; }
            c->line[c->len++] = b;
            continue;
        }
        const char *r = "ERROR unknown request\r\n";
        if (c->len == 5 && memcmp(c->line, "TIME\r", 5) == 0) r = reply;
        else if (c->len == 5 && memcmp(c->line, "QUIT\r", 5) == 0) quit = 1;
        c->len = 0;
        if (!quit) {
            size_t l = strlen(r);
            if (o + l > sizeof out) { drop(fd); return; }
            memcpy(out + o, r, l);
            o += l;
        }
    }
    if (o > 0 && write(fd, out, o) != (ssize_t)o) { drop(fd); return; }
    if (quit) drop(fd);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* inherited by accepted sockets */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096) || getsockname(lfd, (struct sockaddr *)&a, &alen)) {
        perror("floor: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "floor listening on 127.0.0.1:%d; one thread, level-triggered epoll\n", ntohs(a.sin_port));
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd != lfd) {
                serve(fd);
                continue;
            }
            int cfd;
            while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                if (cfd >= MAX_FDS) { close(cfd); continue; }
                conns[cfd] = calloc(1, sizeof(struct conn));
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
            }
        }
    }
}
