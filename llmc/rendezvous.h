/*
 Process-group bootstrap without MPI (host only, C11 and C++): where a process learns its rank, and how
 rank 0 hands an opaque id (NCCL's 128-byte unique id) to every other rank.

 Rank / world / local rank come from the first launcher whose variables are set (process_env_detect):
   OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK   mpirun (Open MPI), also when
                                                                          mpirun only launches (no -DUSE_MPI)
   SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID                                srun (one task per GPU)
   RANK, WORLD_SIZE, LOCAL_RANK                                             torchrun-style or by hand;
                                                                          LOCAL_RANK defaults to RANK
 and with none of them set the process is rank 0 of a world of 1.

 The id exchange is a full barrier: a rank returns only once every rank of the world has checked in, so a
 missing peer makes every present rank fail within the timeout with a message, instead of the survivors
 hanging inside NCCL's communicator setup.
 (a) shared file system, rendezvous_fs: rank 0 writes <dir>/nccl_id_<tag> (crash-safe: tmp + rename),
     each peer r polls for it and answers <dir>/nccl_id_<tag>.ack<r> = id + a random nonce; once all
     answers carry this id rank 0 writes <dir>/nccl_id_<tag>.ready = id + every rank's nonce. A peer
     accepts the id only when .ready echoes its own nonce, so files left by an earlier run with the same
     tag are never mistaken for this run's (rank 0 also deletes them first). Files are left behind.
 (b) TCP, rendezvous_tcp: rank 0 listens on the port of host:port (all interfaces); peers connect with
     retries, say hello (rank, world, id size); when all world-1 peers are in, rank 0 sends each the id.
*/
#ifndef LLMC_RENDEZVOUS_H
#define LLMC_RENDEZVOUS_H

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "utils.h"

#define RENDEZVOUS_MAX_ID 1024
#define RENDEZVOUS_MAX_WORLD 4096
#define RENDEZVOUS_POLL_MS 20

typedef struct {
    int rank, world, local_rank;
    const char *source;  // which launcher's variables were used, for the log
} ProcessEnv;

typedef struct {
    int rank, world;
    const char *endpoint;  // fs: an existing directory every rank sees; tcp: host:port of rank 0
    const char *tag;       // fs: names the files, so concurrent jobs can share a directory
    double timeout_s;      // for the whole exchange; every rank fails with a message when it runs out
} Rendezvous;

static inline double rdv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void rdv_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// ---------------------------------------------------------------------------------------------------
// rank, world and local rank from the launcher's environment

static inline int rdv_env_int(const char *name, int *out) {
    const char *v = getenv(name);
    if (v == NULL) { return 0; }
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < 0 || x > 1000000) { die("environment variable %s='%s' is not a non-negative integer", name, v); }
    *out = (int)x;
    return 1;
}

static inline ProcessEnv process_env_detect(void) {
    static const char *sets[][4] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "Open MPI (mpirun)"},
        {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "Slurm (srun)"},
        {"RANK", "WORLD_SIZE", "LOCAL_RANK", "RANK/WORLD_SIZE"},
    };
    ProcessEnv e = {0, 1, 0, "single process (no launcher variables)"};
    for (int s = 0; s < 3; s++) {
        if (!rdv_env_int(sets[s][0], &e.rank)) { continue; }
        if (!rdv_env_int(sets[s][1], &e.world)) { die("%s is set but %s is not", sets[s][0], sets[s][1]); }
        if (!rdv_env_int(sets[s][2], &e.local_rank)) { e.local_rank = e.rank; }
        e.source = sets[s][3];
        if (e.world < 1 || e.world > RENDEZVOUS_MAX_WORLD) { die("%s=%d: world size must be in [1, %d]", sets[s][1], e.world, RENDEZVOUS_MAX_WORLD); }
        if (e.rank >= e.world) { die("%s=%d is not below %s=%d", sets[s][0], e.rank, sets[s][1], e.world); }
        if (e.local_rank > e.rank) { die("%s=%d exceeds the global rank %d", sets[s][2], e.local_rank, e.rank); }
        break;
    }
    return e;
}

static inline void rdv_check(const Rendezvous *r, size_t bytes, const char *kind) {
    if (r->world < 1 || r->world > RENDEZVOUS_MAX_WORLD || r->rank < 0 || r->rank >= r->world) {
        die("rendezvous (%s): rank %d / world %d is not a valid rank of the world", kind, r->rank, r->world);
    }
    if (bytes == 0 || bytes > RENDEZVOUS_MAX_ID) { die("rendezvous (%s): id of %zu bytes (1..%d)", kind, bytes, RENDEZVOUS_MAX_ID); }
    if (!(r->timeout_s > 0)) { die("rendezvous (%s): timeout %g s must be > 0", kind, r->timeout_s); }
    if (r->endpoint == NULL || r->endpoint[0] == '\0') { die("rendezvous (%s): no endpoint given", kind); }
}

// Lists up to 8 ranks whose flag is 0, for error messages ("2, 5, 7").
static inline void rdv_missing_list(char *buf, size_t n, const int *present, int world) {
    buf[0] = '\0';
    int shown = 0, missing = 0;
    for (int i = 0; i < world; i++) {
        if (present[i]) { continue; }
        missing++;
        if (shown < 8) { size_t len = strlen(buf); snprintf(buf + len, n - len, "%s%d", shown ? ", " : "", i); shown++; }
    }
    if (missing > shown) { size_t len = strlen(buf); snprintf(buf + len, n - len, " and %d more", missing - shown); }
}

// ---------------------------------------------------------------------------------------------------
// (a) shared file system

// 1 when <path> exists with exactly `bytes` bytes (copied to buf); 0 when absent or of another size
// (being replaced, or from another program): the caller keeps polling.
static inline int rdv_read_file(const char *path, void *buf, size_t bytes) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT) { return 0; }
        die("rendezvous (fs): cannot open '%s': %s", path, strerror(errno));
    }
    size_t got = fread(buf, 1, bytes, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    return got == bytes && !extra;
}

static inline void rdv_write_file(const char *path, const void *buf, size_t bytes) {
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, buf, 1, bytes);
    atomic_close(&af);
}

static inline void rdv_remove(const char *path) {
    if (remove(path) != 0 && errno != ENOENT) { die("rendezvous (fs): cannot remove stale '%s': %s", path, strerror(errno)); }
}

static inline uint64_t rdv_nonce(void) {
    uint64_t x = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) { if (fread(&x, sizeof(x), 1, f) != 1) { x = 0; } fclose(f); }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return x ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ 1ull;
}

// Rank 0 passes its id in `id`; every other rank gets rank 0's id there.
static inline void rendezvous_fs(const Rendezvous *r, void *id, size_t bytes) {
    rdv_check(r, bytes, "fs");
    if (r->world == 1) { return; }
    struct stat st;
    if (stat(r->endpoint, &st) != 0 || !S_ISDIR(st.st_mode)) { die("rendezvous (fs): '%s' is not an existing directory", r->endpoint); }
    if (r->tag == NULL || r->tag[0] == '\0') { die("rendezvous (fs): no run tag given"); }
    for (const char *c = r->tag; *c; c++) {
        if (!(isalnum((unsigned char)*c) || *c == '.' || *c == '_' || *c == '-')) { die("rendezvous (fs): tag '%s' may hold only letters, digits, '.', '_', '-'", r->tag); }
    }
    char base[900], path[1024];
    snprintf(base, sizeof(base), "%s/nccl_id_%s", r->endpoint, r->tag);
    char ready_path[1024];
    snprintf(ready_path, sizeof(ready_path), "%s.ready", base);
    size_t ack_bytes = bytes + 8, ready_bytes = bytes + 8 * (size_t)r->world;
    uint8_t *ack = (uint8_t *)malloc_check(ack_bytes), *ready = (uint8_t *)malloc_check(ready_bytes);
    double deadline = rdv_now() + r->timeout_s;
    if (r->rank == 0) {
        rdv_remove(base); rdv_remove(ready_path);
        for (int i = 1; i < r->world; i++) { snprintf(path, sizeof(path), "%s.ack%d", base, i); rdv_remove(path); }
        rdv_write_file(base, id, bytes);
        int *present = (int *)calloc_check((size_t)r->world, sizeof(int));
        present[0] = 1;
        memcpy(ready, id, bytes);
        int arrived = 1;
        while (arrived < r->world) {
            for (int i = 1; i < r->world; i++) {
                snprintf(path, sizeof(path), "%s.ack%d", base, i);
                if (!present[i] && rdv_read_file(path, ack, ack_bytes) && memcmp(ack, id, bytes) == 0) {
                    present[i] = 1; arrived++;
                    memcpy(ready + bytes + 8 * (size_t)i, ack + bytes, 8);
                }
            }
            if (arrived == r->world) { break; }
            if (rdv_now() > deadline) {
                char list[256];
                rdv_missing_list(list, sizeof(list), present, r->world);
                free(present); free(ack); free(ready);
                die("rendezvous (fs '%s'): rank 0 waited %g s and ranks %s of %d never answered (not started, died, or another -E/tag?)",
                    base, r->timeout_s, list, r->world);
            }
            rdv_sleep_ms(RENDEZVOUS_POLL_MS);
        }
        rdv_write_file(ready_path, ready, ready_bytes);
        free(present);
    } else {
        uint64_t nonce = rdv_nonce();
        uint8_t *cur = (uint8_t *)malloc_check(bytes);
        int acked = 0;
        snprintf(path, sizeof(path), "%s.ack%d", base, r->rank);
        for (;;) {
            // A different id than the one acknowledged means rank 0 (re)started: acknowledge the new one.
            if (rdv_read_file(base, cur, bytes) && (!acked || memcmp(cur, ack, bytes) != 0)) {
                memcpy(ack, cur, bytes);
                memcpy(ack + bytes, &nonce, 8);
                rdv_write_file(path, ack, ack_bytes);
                acked = 1;
            }
            if (acked && rdv_read_file(ready_path, ready, ready_bytes) && memcmp(ready, ack, bytes) == 0 &&
                memcmp(ready + bytes + 8 * (size_t)r->rank, &nonce, 8) == 0) {
                memcpy(id, ack, bytes);
                break;
            }
            if (rdv_now() > deadline) {
                free(cur); free(ack); free(ready);
                if (!acked) { die("rendezvous (fs): rank %d found no id from rank 0 at '%s' within %g s (is rank 0 running with the same -E and tag?)", r->rank, base, r->timeout_s); }
                die("rendezvous (fs): rank %d: rank 0 did not confirm all %d ranks at '%s' within %g s (a rank is missing)", r->rank, r->world, ready_path, r->timeout_s);
            }
            rdv_sleep_ms(RENDEZVOUS_POLL_MS);
        }
        free(cur);
    }
    free(ack); free(ready);
}

// ---------------------------------------------------------------------------------------------------
// (b) TCP

#define RDV_TCP_MAGIC 0x4D4F4241u  // "MOBA"
typedef struct { uint32_t magic; int32_t rank, world; uint32_t bytes; } RdvHello;

static inline void rdv_split_endpoint(const char *endpoint, char *host, size_t host_n, char *port, size_t port_n) {
    const char *colon = strrchr(endpoint, ':');
    char *end;
    long p = colon ? strtol(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon[1] == '\0' || *end != '\0' || p < 1 || p > 65535) { die("rendezvous (tcp): endpoint '%s' must be host:port with port 1..65535", endpoint); }
    size_t hl = (size_t)(colon - endpoint);
    if (hl == 0 || hl >= host_n) { die("rendezvous (tcp): endpoint '%s' has no usable host name", endpoint); }
    memcpy(host, endpoint, hl);
    host[hl] = '\0';
    snprintf(port, port_n, "%ld", p);
}

// Send/receive timeouts bound every blocking socket call (connect too, on Linux) by the time left.
static inline void rdv_socket_timeout(int fd, double seconds) {
    if (seconds < 0.01) { seconds = 0.01; }
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// 1 when all `n` bytes moved; 0 on end of stream, timeout or error (errno tells which).
static inline int rdv_recv_all(int fd, void *buf, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t k = recv(fd, (char *)buf + got, n - got, 0);
        if (k == 0) { errno = 0; return 0; }
        if (k < 0) { if (errno == EINTR) { continue; } return 0; }
        got += (size_t)k;
    }
    return 1;
}

static inline int rdv_send_all(int fd, const void *buf, size_t n) {
    for (size_t sent = 0; sent < n;) {
        ssize_t k = send(fd, (const char *)buf + sent, n - sent, MSG_NOSIGNAL);  // a dead peer must not SIGPIPE us
        if (k < 0) { if (errno == EINTR) { continue; } return 0; }
        sent += (size_t)k;
    }
    return 1;
}

static inline void rdv_tcp_root(const Rendezvous *r, const char *port, const void *id, size_t bytes, double deadline) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) { die("rendezvous (tcp): socket: %s", strerror(errno)); }
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons((uint16_t)atoi(port));
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0) { die("rendezvous (tcp): rank 0 cannot listen on port %s: %s", port, strerror(errno)); }
    if (listen(lfd, r->world) != 0) { die("rendezvous (tcp): listen on port %s: %s", port, strerror(errno)); }
    int *fds = (int *)malloc_check(sizeof(int) * (size_t)r->world);
    int *present = (int *)calloc_check((size_t)r->world, sizeof(int));
    present[0] = 1;
    for (int arrived = 1; arrived < r->world;) {
        double left = deadline - rdv_now();
        struct pollfd p = {lfd, POLLIN, 0};
        int ready = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
        if (ready < 0 && errno == EINTR) { continue; }
        if (ready <= 0) {
            char list[256];
            rdv_missing_list(list, sizeof(list), present, r->world);
            free(fds); free(present);
            die("rendezvous (tcp port %s): rank 0 waited %g s and ranks %s of %d never connected (not started, died, or another host:port?)",
                port, r->timeout_s, list, r->world);
        }
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) { continue; }
        rdv_socket_timeout(fd, deadline - rdv_now());
        RdvHello h;
        if (!rdv_recv_all(fd, &h, sizeof(h)) || h.magic != RDV_TCP_MAGIC) {
            fprintf(stderr, "rendezvous (tcp): rank 0 ignored a connection that did not say hello\n");
            close(fd);
            continue;
        }
        if (h.world != r->world || h.bytes != bytes) { die("rendezvous (tcp): rank %d has world %d and id size %u, rank 0 has %d and %zu", h.rank, h.world, h.bytes, r->world, bytes); }
        if (h.rank < 1 || h.rank >= r->world || present[h.rank]) { die("rendezvous (tcp): a second or invalid rank %d connected (world %d)", h.rank, r->world); }
        present[h.rank] = 1; fds[h.rank] = fd; arrived++;
    }
    for (int i = 1; i < r->world; i++) {
        if (!rdv_send_all(fds[i], id, bytes)) { die("rendezvous (tcp): rank 0 could not send the id to rank %d: %s", i, strerror(errno)); }
        close(fds[i]);
    }
    close(lfd);
    free(fds); free(present);
}

static inline void rdv_tcp_peer(const Rendezvous *r, const char *host, const char *port, void *id, size_t bytes, double deadline) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) { die("rendezvous (tcp): rank %d cannot resolve '%s': %s", r->rank, host, gai_strerror(gai)); }
    int fd = -1;
    while (fd < 0) {
        double left = deadline - rdv_now();
        if (left <= 0) { die("rendezvous (tcp): rank %d could not connect to rank 0 at %s:%s within %g s (is rank 0 running? port open?)", r->rank, host, port, r->timeout_s); }
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) { die("rendezvous (tcp): socket: %s", strerror(errno)); }
        rdv_socket_timeout(fd, left);
        if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) { close(fd); fd = -1; rdv_sleep_ms(100); }
    }
    freeaddrinfo(res);
    RdvHello h = {RDV_TCP_MAGIC, r->rank, r->world, (uint32_t)bytes};
    if (!rdv_send_all(fd, &h, sizeof(h))) { die("rendezvous (tcp): rank %d could not say hello to %s:%s: %s", r->rank, host, port, strerror(errno)); }
    rdv_socket_timeout(fd, deadline - rdv_now());
    if (!rdv_recv_all(fd, id, bytes)) {
        if (errno == 0) { die("rendezvous (tcp): rank %d: rank 0 at %s:%s closed the connection before sending the id (a rank is missing, or rank 0 died)", r->rank, host, port); }
        die("rendezvous (tcp): rank %d got no id from rank 0 at %s:%s within %g s (a rank is missing): %s", r->rank, host, port, r->timeout_s, strerror(errno));
    }
    close(fd);
}

// Rank 0 passes its id in `id`; every other rank gets rank 0's id there.
static inline void rendezvous_tcp(const Rendezvous *r, void *id, size_t bytes) {
    rdv_check(r, bytes, "tcp");
    char host[256], port[16];
    rdv_split_endpoint(r->endpoint, host, sizeof(host), port, sizeof(port));
    if (r->world == 1) { return; }
    double deadline = rdv_now() + r->timeout_s;
    if (r->rank == 0) { rdv_tcp_root(r, port, id, bytes, deadline); }
    else { rdv_tcp_peer(r, host, port, id, bytes, deadline); }
}

// ---------------------------------------------------------------------------------------------------
// The trainer's -P value: how the processes of a run find each other.
//   auto             mpi when built with MPI and launched by mpirun, else local
//   local            one process, world 1, no NCCL (launcher variables with a world > 1 are refused)
//   single           one process, world 1, through an NCCL communicator of one (the multi-GPU code path)
//   mpi              MPI_COMM_WORLD (needs the MPI build)
//   fs:<dir>         NCCL id through a directory every rank sees (rendezvous_fs)
//   tcp:<host:port>  NCCL id over TCP from rank 0 at host:port (rendezvous_tcp)
//   env              tcp at $MASTER_ADDR:$MASTER_PORT (the variables torchrun-style launchers set)
// Checked when the flags are parsed, so a typo fails before any GPU work, with one line.

typedef struct {
    char init[8];          // "auto", "local", "single", "mpi", "fs" or "tcp"
    char endpoint[1024];   // fs: the directory; tcp: host:port; else empty
} ProcessGroupSpec;

static inline ProcessGroupSpec process_group_parse(const char *spec) {
    ProcessGroupSpec s;
    memset(&s, 0, sizeof(s));
    if (strcmp(spec, "auto") == 0 || strcmp(spec, "local") == 0 || strcmp(spec, "single") == 0 || strcmp(spec, "mpi") == 0) {
        snprintf(s.init, sizeof(s.init), "%s", spec);
        return s;
    }
    if (strcmp(spec, "env") == 0) {
        const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
        if (addr == NULL || port == NULL || addr[0] == '\0' || port[0] == '\0') { die("-P env: MASTER_ADDR and MASTER_PORT must both be set"); }
        snprintf(s.init, sizeof(s.init), "tcp");
        if ((size_t)snprintf(s.endpoint, sizeof(s.endpoint), "%s:%s", addr, port) >= sizeof(s.endpoint)) { die("-P env: MASTER_ADDR is too long"); }
    } else if (strncmp(spec, "fs:", 3) == 0 || strncmp(spec, "tcp:", 4) == 0) {
        int fs = spec[0] == 'f';
        const char *value = spec + (fs ? 3 : 4);
        if (value[0] == '\0') { die("-P %s needs %s after the colon", spec, fs ? "a directory" : "host:port"); }
        if (strlen(value) >= sizeof(s.endpoint)) { die("-P %.8s...: endpoint longer than %zu characters", spec, sizeof(s.endpoint) - 1); }
        snprintf(s.init, sizeof(s.init), "%s", fs ? "fs" : "tcp");
        snprintf(s.endpoint, sizeof(s.endpoint), "%s", value);
    } else {
        die("-P '%s': must be auto, local, single, mpi, fs:<dir>, tcp:<host:port> or env", spec);
    }
    if (strcmp(s.init, "tcp") == 0) {  // the same check the exchange makes, but now
        char host[256], port[16];
        rdv_split_endpoint(s.endpoint, host, sizeof(host), port, sizeof(port));
    }
    return s;
}

#endif // LLMC_RENDEZVOUS_H
