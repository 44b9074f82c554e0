/* A few assertion macros for the C tests: each failed check prints where and
 * why (with netlab's last error), and the program exits non-zero at the end
 * when any failed. */
#ifndef NETLAB_CHECK_H
#define NETLAB_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netlab.h"

static int failures = 0;

static inline const char *last_error(void) {
    static char buf[1024];
    netlab_last_error(buf, sizeof buf);
    return buf;
}

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Checks that a call returns `want`, and prints the call, the status and
 * the last error when it does not. */
#define CHECK_STATUS(call, want)                                           \
    do {                                                                   \
        netlab_status got_ = (call);                                       \
        if (got_ != (want)) {                                              \
            fprintf(stderr, "%s:%d: FAILED: %s gave %d (%s), want %s: %s\n", \
                    __FILE__, __LINE__, #call, (int)got_,                  \
                    netlab_status_str((int)got_), #want, last_error());    \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, NETLAB_OK)

/* Checks that the last error contains `needle`. */
#define CHECK_MESSAGE(needle)                                              \
    do {                                                                   \
        const char *msg_ = last_error();                                   \
        if (strstr(msg_, (needle)) == NULL) {                              \
            fprintf(stderr, "%s:%d: FAILED: last error \"%s\" lacks \"%s\"\n", \
                    __FILE__, __LINE__, msg_, (needle));                   \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define RUN(test)                                                          \
    do {                                                                   \
        int before_ = failures;                                            \
        test();                                                            \
        printf("%s %s\n", failures == before_ ? "ok  " : "FAIL", #test);   \
        fflush(stdout);                                                    \
    } while (0)

#define FINISH()                                                           \
    do {                                                                   \
        printf("%s: %d failed check(s)\n", __FILE__, failures);            \
        return failures == 0 ? 0 : 1;                                      \
    } while (0)

/* Starts a server from `config`; on failure prints why and returns NULL. */
static inline netlab_server *start(const char *config) {
    netlab_server *server = NULL;
    netlab_status status = netlab_server_start(config, &server);
    if (status != NETLAB_OK) {
        fprintf(stderr, "cannot start server: %s: %s\n",
                netlab_status_str((int)status), last_error());
        failures++;
        return NULL;
    }
    return server;
}

/* "127.0.0.1:PORT" of listener `index` into `buf`. */
static inline void address_of(const netlab_server *server, size_t index, char *buf, size_t len) {
    size_t n = 0;
    CHECK_OK(netlab_server_address(server, index, buf, len, &n));
    CHECK(n == strlen(buf));
}

#endif
