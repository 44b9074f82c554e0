/*
 * The floor for TCP echo on this machine: the least work any epoll server
 * can do per request. One thread, edge-triggered epoll, TCP_NODELAY, one
 * recv and one send per request, no timers, no limits, no accounting, no
 * graceful stop. benches/run-echo.sh runs it next to netlabd and tokio so
 * that the table shows how far above the kernel's own cost each server is:
 * no server built on epoll can beat this one by more than its user-space
 * share, whatever it does.
 *
 * Usage: epoll-echo-floor [PORT]   (default 0; binds 127.0.0.1 only)
 * The bound address is the first line on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 1024

static char buffer[64 * 1024];

/* Sends all of data; a full send buffer (which a closed-loop load never
 * causes) waits for room rather than dropping bytes. Returns 0, or -1 when
 * the peer is gone. */
static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t sent = send(fd, data, len, MSG_NOSIGNAL);
        if (sent > 0) {
            data += sent;
            len -= (size_t)sent;
        } else if (sent < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                return -1;
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Echoes everything readable now; closes the connection at end of stream or
 * on error. */
static void echo_ready(int fd) {
    for (;;) {
        ssize_t got = recv(fd, buffer, sizeof buffer, 0);
        if (got > 0) {
            if (send_all(fd, buffer, (size_t)got) < 0)
                break;
            if ((size_t)got < sizeof buffer)
                return; /* a short read drained the socket: edge-triggered epoll says so next time */
        } else if (got < 0 && errno == EAGAIN) {
            return;
        } else if (got < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    close(fd); /* also removes it from the epoll set */
}

int main(int argc, char **argv) {
    char *end = NULL;
    long port = argc > 1 ? strtol(argv[1], &end, 10) : 0;
    if (argc > 2 || (argc > 1 && (*end != '\0' || port < 0 || port > 65535))) {
        fprintf(stderr, "usage: epoll-echo-floor [PORT]  (PORT 0-65535, default 0)\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) {
        perror("epoll-echo-floor: socket");
        return 1;
    }
    int one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t addr_len = sizeof addr;
    if (setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0
        || listen(listener, 1024) < 0
        || getsockname(listener, (struct sockaddr *)&addr, &addr_len) < 0) {
        perror("epoll-echo-floor: listen on 127.0.0.1");
        return 1;
    }
    printf("127.0.0.1:%u\n", ntohs(addr.sin_port));
    fflush(stdout);

    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event listen_event = {.events = EPOLLIN, .data.fd = listener};
    if (epoll < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &listen_event) < 0) {
        perror("epoll-echo-floor: epoll");
        return 1;
    }
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int ready = epoll_wait(epoll, events, MAX_EVENTS, -1);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll-echo-floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd != listener) {
                echo_ready(fd);
                continue;
            }
            int conn;
            while ((conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                struct epoll_event conn_event = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = conn};
                if (setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0
                    || epoll_ctl(epoll, EPOLL_CTL_ADD, conn, &conn_event) < 0)
                    close(conn);
            }
        }
    }
}
