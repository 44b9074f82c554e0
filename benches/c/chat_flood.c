/* chat_flood: a chat load generator that shares no code with netlab, to
 * measure a chat server's CPU per delivery under a load netlab's own
 * generator does not shape: one sender writes one message per write(),
 * keeping up to INFLIGHT messages between its write and their arrival at
 * the first reader; every other client reads. A message is SIZE bytes, a
 * newline included, and carries the marker "zq7:", which the readers count
 * (join and leave notices never hold it).
 *
 *   chat_flood HOST PORT CLIENTS INFLIGHT SIZE WARMUP DURATION LOGIN SERVER_PID
 *
 * LOGIN is "line" (each client first sends a name line, as netlabd's line
 * dialect wants) or "none" (ncat --chat). Prints one JSON line with
 * deliveries_per_s and sent_per_s over the DURATION seconds after WARMUP,
 * and server_cpu_s, the CPU time (user + system) process SERVER_PID spent
 * in that same window, read from /proc (0 as SERVER_PID: not measured),
 * and generator_cpu_s, its own in that window: on loopback part of what one
 * side sends is processed in the other's system calls (a segment that
 * waited for an ACK leaves in the receiver's), so the sum is what a relay
 * costs the machine.
 * Connecting every client and letting the join notices settle comes before
 * the warm-up, however long a server takes to accept them all.
 *
 * Build: gcc -O2 -Wall -Wextra -o chat_flood benches/c/chat_flood.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char MARKER[] = "zq7:";
#define MARKER_LEN 4

struct reader {
    int fd;
    unsigned long long seen; /* markers counted */
    int carry;               /* bytes of a marker matched at the end of the last read */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) process pid has used, from /proc. */
static double cpu_seconds(long pid) {
    if (pid <= 0) return 0;
    char path[64], line[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) {
        fprintf(stderr, "chat_flood: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    /* Fields after the command's closing parenthesis: state is the 3rd
     * field of the line, utime and stime the 14th and 15th. */
    char *p = strrchr(line, ')');
    unsigned long long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
        fprintf(stderr, "chat_flood: cannot parse %s\n", path);
        exit(1);
    }
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds (user + system) this process has used. */
static double own_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int connect_to(const char *host, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "chat_flood: %s is not an IPv4 address\n", host);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Counts the markers in buf, one that straddles two reads included. */
static void count(struct reader *r, const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == MARKER[r->carry]) {
            if (++r->carry == MARKER_LEN) {
                r->seen++;
                r->carry = 0;
            }
        } else {
            r->carry = buf[i] == MARKER[0] ? 1 : 0;
        }
    }
}

/* Reads what is there on r (non-blocking); 0 when the server closed it. */
static int drain(struct reader *r, char *buf, size_t cap) {
    for (;;) {
        ssize_t n = recv(r->fd, buf, cap, MSG_DONTWAIT);
        if (n > 0) {
            count(r, buf, (size_t)n);
            continue;
        }
        if (n == 0) return 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
        if (errno == EINTR) continue;
        die("recv");
    }
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: chat_flood HOST PORT CLIENTS INFLIGHT SIZE WARMUP DURATION line|none SERVER_PID\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int clients = atoi(argv[3]);
    long inflight = atol(argv[4]);
    int size = atoi(argv[5]);
    double warmup = atof(argv[6]);
    double duration = atof(argv[7]);
    int login = strcmp(argv[8], "line") == 0;
    long server_pid = atol(argv[9]);
    if (clients < 2 || inflight < 1 || size < MARKER_LEN + 1 || size > 4096 || duration <= 0) {
        fprintf(stderr, "chat_flood: need CLIENTS >= 2, INFLIGHT >= 1, SIZE in 5..4096, DURATION > 0\n");
        return 2;
    }

    int sender = connect_to(host, port);
    int nreaders = clients - 1;
    struct reader *readers = calloc((size_t)nreaders, sizeof *readers);
    if (!readers) die("calloc");
    char name[32];
    if (login) {
        int len = snprintf(name, sizeof name, "flood-sender\n");
        write_all(sender, name, (size_t)len);
    }
    for (int i = 0; i < nreaders; i++) {
        readers[i].fd = connect_to(host, port);
        if (login) {
            int len = snprintf(name, sizeof name, "flood-%d\n", i);
            write_all(readers[i].fd, name, (size_t)len);
        }
    }

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < nreaders; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, readers[i].fd, &ev) < 0) die("epoll_ctl");
    }

    /* Let every welcome and join notice arrive and be read before the
     * messages start, and drain what the sender is told too. */
    char buf[65536];
    double settle = now() + 1.0;
    while (now() < settle) {
        struct epoll_event events[128];
        int n = epoll_wait(ep, events, 128, 50);
        for (int k = 0; k < n; k++) drain(&readers[events[k].data.u32], buf, sizeof buf);
    }
    for (;;) {
        ssize_t n = recv(sender, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
    }
    for (int i = 0; i < nreaders; i++) readers[i].seen = 0;

    char message[4096];
    memset(message, 'x', (size_t)size);
    memcpy(message, MARKER, MARKER_LEN);
    message[size - 1] = '\n';

    unsigned long long sent = 0, sent_at_start = 0, seen_at_start = 0;
    double cpu_at_start = 0, own_at_start = 0;
    double start = now();
    double measure_from = start + warmup, measure_to = measure_from + duration;
    int measuring = 0;
    for (;;) {
        double t = now();
        if (!measuring && t >= measure_from) {
            measuring = 1;
            sent_at_start = sent;
            for (int i = 0; i < nreaders; i++) seen_at_start += readers[i].seen;
            cpu_at_start = cpu_seconds(server_pid);
            own_at_start = own_cpu_seconds();
        }
        if (t >= measure_to) break;
        /* One message per write while the first reader is within INFLIGHT. */
        while (sent - readers[0].seen < (unsigned long long)inflight) {
            ssize_t n = send(sender, message, (size_t)size, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n == size) {
                sent++;
                continue;
            }
            if (n >= 0) { /* a partial write: finish it, blocking */
                write_all(sender, message + n, (size_t)(size - n));
                sent++;
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            die("send");
        }
        struct epoll_event events[128];
        int n = epoll_wait(ep, events, 128, 10);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            if (!drain(&readers[events[k].data.u32], buf, sizeof buf)) {
                fprintf(stderr, "chat_flood: the server closed reader %u\n", events[k].data.u32);
                return 1;
            }
        }
    }
    double cpu = cpu_seconds(server_pid) - cpu_at_start;
    double own = own_cpu_seconds() - own_at_start;
    unsigned long long seen = 0;
    for (int i = 0; i < nreaders; i++) seen += readers[i].seen;
    printf("{\"deliveries_per_s\":%.1f,\"sent_per_s\":%.1f,\"server_cpu_s\":%.3f,\"generator_cpu_s\":%.3f,"
           "\"readers\":%d,\"inflight\":%ld,\"size\":%d}\n",
           (double)(seen - seen_at_start) / duration, (double)(sent - sent_at_start) / duration, cpu, own,
           nreaders, inflight, size);
    return 0;
}
