/*
 The process group of a data-parallel run: one process per GPU, joined through MPI (mpirun) or without
 it through llmc/rendezvous.h (shared directory or TCP host:port), with one NCCL communicator and a
 communication stream; the collectives a trainer needs (mean all-reduce, ZeRO-1 reduce-scatter and
 all-gather, per-bucket grouped variants that overlap the backward), a barrier, a cross-rank parameter
 checksum, and a watchdog.

 Builds: -DMULTI_GPU (NCCL present) and optionally -DUSE_MPI. Without MULTI_GPU (make NO_MULTI_GPU=1 or
 no nccl.h) every function keeps its meaning for a world of 1 (a copy where out != in), and a launch
 with world > 1 is refused. With MULTI_GPU, init "single" makes a communicator of one, so one GPU
 exercises the same NCCL path as eight; init "local" (what "auto" is without a launcher) makes none:
 a plain single-GPU run needs no NCCL at run time and behaves as the NO_MULTI_GPU build.

 Watchdog (llmc/deadline_watch.h): every NCCL call (setup, enqueue, group end, finalize) publishes "in
 call X since t" in host memory before it starts and clears it when the non-blocking communicator says
 it is done; every collective records an event on its stream and stays published until a poller thread
 sees the event complete. A monitor thread that reads only those timestamps (it calls neither NCCL nor
 CUDA, so a call that never returns cannot stop it) ends the process when one is older than timeout_s
 (a rank died, hangs, or diverged in its sequence of collectives): one line naming this rank, the
 communicator aborted on a helper thread (which stops NCCL kernels spinning on a dead peer) within a
 grace period, exit 1. The poller also ends it on an NCCL asynchronous error or a failed event.
*/
#ifndef LLMC_MULTI_GPU_CUH
#define LLMC_MULTI_GPU_CUH

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include "cuda_common.cuh"
#include "deadline_watch.h"
#include "rendezvous.h"
#include "utils.h"
#ifdef MULTI_GPU
#include <nccl.h>
#endif
#ifdef USE_MPI
#include <mpi.h>
#endif

typedef struct {
    const char *init;      // "auto" (or NULL): mpi when built with MPI and launched by mpirun, else local;
                           // "local" (world 1, no NCCL), "single" (world 1 through NCCL), "mpi",
                           // "fs" (endpoint = shared directory), "tcp" (endpoint = host:port of rank 0)
    const char *endpoint;
    const char *tag;       // fs file names; NULL: $SLURM_JOB_ID, else "moba" (concurrent jobs need distinct tags)
    int device;            // CUDA device; -1: the local rank
    float timeout_s;       // rendezvous, communicator setup, and each collective; <= 0: 300
} MultiGpuArgs;

static inline MultiGpuArgs multi_gpu_default_args(void) {
    MultiGpuArgs a = {"auto", NULL, NULL, -1, 300.0f};
    return a;
}

// ZeRO-1 shard of an array of n elements: every rank owns `count` = ceil(n / world) elements starting at
// rank * count, so shards are equal and a reduce-scatter / all-gather over world * count elements needs
// no per-rank sizes. Elements [n, world * count) are padding when world does not divide n.
static inline void zero_shard_range(size_t n, int rank, int world, size_t *start, size_t *count) {
    *count = (n + (size_t)world - 1) / (size_t)world;
    *start = (size_t)rank * *count;
}

#define MULTI_GPU_WATCH_RING 4096
#define MULTI_GPU_ABORT_GRACE_S 10

#ifdef MULTI_GPU
// The collectives in flight: a ring of events [tail, head), each with its deadline slot. One thread
// enqueues (head), the poller retires (tail): no lock, so neither can block the other.
typedef struct {
    DeadlineWatch deadline;
    pthread_t poller;
    cudaEvent_t events[MULTI_GPU_WATCH_RING];
    int slot[MULTI_GPU_WATCH_RING];
    const char *what[MULTI_GPU_WATCH_RING];
    long head, tail;
    int stop, rank, device, polling;
    ncclComm_t comm;  // what the expiry aborts; NULL before setup and once destroyed
} MultiGpuWatchdog;
#else
typedef struct MultiGpuWatchdog MultiGpuWatchdog;
#endif

typedef struct {
    int rank, world, local_rank, device;
    const char *init;          // how the group was formed, for the log
    const char *launcher;      // where rank and world came from
    int mpi;                   // MPI_Init was called: MPI_Finalize at the end
    int nccl;                  // a communicator exists (else every collective is a local copy, world 1)
    int grouped;               // inside ncclGroupStart/End: collectives are watched once, at the end
    float timeout_s;
    cudaStream_t comm_stream;  // bucket reductions run here, overlapping the backward on the main stream
    cudaEvent_t main_mark, comm_mark;
    uint64_t *scratch;         // device: one checksum per rank, or a scalar
    MultiGpuWatchdog *wd;
#ifdef MULTI_GPU
    ncclComm_t comm;
#endif
} MultiGpu;

// ---------------------------------------------------------------------------------------------------
// NCCL plumbing: error checks that wait out the non-blocking communicator, types, the watchdog

#ifdef MULTI_GPU
// Waits out a call of the non-blocking communicator (ncclInProgress: it goes on in the background) and
// clears its deadline slot. The deadline watch, not this loop, ends a wait that never finishes: even
// ncclCommGetAsyncError may not return while a peer is alive but absent. Polls without sleeping for the
// first NCCL_SPIN_S: a group end of a bucket is usually in progress for microseconds, and a 1 ms sleep
// per bucket kept the host from enqueuing the next step's work (26 buckets x 2 per step on 340M).
#define NCCL_SPIN_S 0.005
static inline void nccl_wait(ncclResult_t r, const MultiGpu *mg, int slot, const char *what, const char *file, int line) {
    double t0 = r == ncclInProgress ? rdv_now() : 0;
    while (r == ncclInProgress) {
        if (rdv_now() - t0 < NCCL_SPIN_S) { sched_yield(); }
        else { rdv_sleep_ms(1); }
        ncclCommGetAsyncError(mg->comm, &r);
    }
    deadline_end(&mg->wd->deadline, slot);
    // the watch's exit, not die(): when the watch fired first (its abort makes this call fail), exit()'s
    // teardown racing its _exit crashed the process (SIGSEGV instead of status 1)
    if (r != ncclSuccess) {
        deadline_watch_fail(&mg->wd->deadline, "rank %d: NCCL %s failed: %s (%s) at %s:%d", mg->rank, what, ncclGetErrorString(r),
                            ncclGetLastError(mg->comm), file, line);
    }
}
#define MULTI_GPU_STR_(x) #x
#define MULTI_GPU_STR(x) MULTI_GPU_STR_(x)
#define ncclCheck(mg, call) do { \
    int slot_ = deadline_begin(&(mg)->wd->deadline, "call " #call " (" __FILE__ ":" MULTI_GPU_STR(__LINE__) ")"); \
    nccl_wait((call), (mg), slot_, #call, __FILE__, __LINE__); \
} while (0)

static inline ncclDataType_t nccl_type(const float *) { return ncclFloat; }
static inline ncclDataType_t nccl_type(const __nv_bfloat16 *) { return ncclBfloat16; }
static inline ncclDataType_t nccl_type(const uint64_t *) { return ncclUint64; }
static inline ncclDataType_t nccl_type(const double *) { return ncclDouble; }

// The deadline watch's last act (on a helper thread, within MULTI_GPU_ABORT_GRACE_S): the abort stops NCCL
// kernels spinning on a dead peer, but it may also wait for other work on the GPU.
static void multi_gpu_abort(void *arg) {
    MultiGpuWatchdog *w = (MultiGpuWatchdog *)arg;
    ncclComm_t comm = __atomic_load_n(&w->comm, __ATOMIC_ACQUIRE);
    if (comm != NULL) { ncclCommAbort(comm); }
}

// Retires completed collectives and polls NCCL's asynchronous error. Any of these calls may block
// (that is what the deadline watch is for); an error found here takes the watch's exit.
static void *multi_gpu_poller_main(void *arg) {
    MultiGpuWatchdog *w = (MultiGpuWatchdog *)arg;
    cudaSetDevice(w->device);
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        long head = __atomic_load_n(&w->head, __ATOMIC_ACQUIRE);
        while (w->tail < head) {
            int i = (int)(w->tail % MULTI_GPU_WATCH_RING);
            cudaError_t q = cudaEventQuery(w->events[i]);
            if (q == cudaErrorNotReady) { break; }
            if (q != cudaSuccess) {
                deadline_watch_fail(&w->deadline, "rank %d: NCCL %s failed on the GPU: %s; aborting the communicator", w->rank, w->what[i], cudaGetErrorString(q));
            }
            deadline_end(&w->deadline, w->slot[i]);
            __atomic_store_n(&w->tail, w->tail + 1, __ATOMIC_RELEASE);
        }
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(w->comm, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress) {
            deadline_watch_fail(&w->deadline, "rank %d: NCCL communicator reported an error: %s; aborting the communicator", w->rank, ncclGetErrorString(async));
        }
        rdv_sleep_ms(50);
    }
    return NULL;
}

// Registers the collective just enqueued on `stream`: it is timed from now until its event completes.
// Inside a group NCCL enqueues nothing before ncclGroupEnd, so an event recorded now would precede it.
static inline void multi_gpu_watch(MultiGpu *mg, cudaStream_t stream, const char *what) {
    if (mg->grouped) { return; }
    MultiGpuWatchdog *w = mg->wd;
    // ring full: the poller retires finished events meanwhile (or the deadline of the oldest expires)
    while (w->head - __atomic_load_n(&w->tail, __ATOMIC_ACQUIRE) >= MULTI_GPU_WATCH_RING) { rdv_sleep_ms(1); }
    int i = (int)(w->head % MULTI_GPU_WATCH_RING);
    w->slot[i] = deadline_begin(&w->deadline, what);
    w->what[i] = what;
    cudaCheck(cudaEventRecord(w->events[i], stream));
    __atomic_store_n(&w->head, w->head + 1, __ATOMIC_RELEASE);
}

// The deadline watch starts before the communicator exists, so its setup is timed too; the poller
// once it does (multi_gpu_poller_start).
static inline void multi_gpu_watchdog_start(MultiGpu *mg) {
    static const char suffix[] = " (a rank died, hangs, or runs different collectives); aborting the communicator";
    MultiGpuWatchdog *w = (MultiGpuWatchdog *)calloc_check(1, sizeof(MultiGpuWatchdog));
    w->rank = mg->rank; w->device = mg->device;
    for (int i = 0; i < MULTI_GPU_WATCH_RING; i++) { cudaCheck(cudaEventCreateWithFlags(&w->events[i], cudaEventDisableTiming)); }
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "rank %d: NCCL ", mg->rank);
    // slots: every ring entry plus the NCCL call in progress
    deadline_watch_start(&w->deadline, MULTI_GPU_WATCH_RING + 4, mg->timeout_s, MULTI_GPU_ABORT_GRACE_S, prefix, suffix, multi_gpu_abort, w);
    mg->wd = w;
}

static inline void multi_gpu_poller_start(MultiGpu *mg) {
    MultiGpuWatchdog *w = mg->wd;
    w->comm = mg->comm;
    if (pthread_create(&w->poller, NULL, multi_gpu_poller_main, w) != 0) { die("rank %d: cannot start the NCCL watchdog thread", mg->rank); }
    w->polling = 1;
}

// The communicator goes (finalize, destroy) under the deadline watch: the poller stops first, the
// monitor last.
static inline void multi_gpu_watchdog_stop(MultiGpu *mg) {
    MultiGpuWatchdog *w = mg->wd;
    if (w->polling) {
        __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
        pthread_join(w->poller, NULL);
    }
    ncclCheck(mg, ncclCommFinalize(mg->comm));
    __atomic_store_n(&w->comm, (ncclComm_t)NULL, __ATOMIC_RELEASE);  // no abort of a communicator being destroyed
    ncclCheck(mg, ncclCommDestroy(mg->comm));
    deadline_watch_stop(&w->deadline);
    for (int i = 0; i < MULTI_GPU_WATCH_RING; i++) { cudaCheck(cudaEventDestroy(w->events[i])); }
    free(w);
    mg->wd = NULL;
}

// The communicator over the id that rank 0 made and the rendezvous / MPI delivered; non-blocking so
// a rank that never joins makes the others fail within the timeout.
static inline void multi_gpu_comm_init(MultiGpu *mg, const MultiGpuArgs *a) {
    ncclUniqueId id;
    memset(&id, 0, sizeof(id));
    if (mg->rank == 0) { ncclResult_t r = ncclGetUniqueId(&id); if (r != ncclSuccess) { die("rank 0: ncclGetUniqueId failed: %s", ncclGetErrorString(r)); } }
    const char *tag = a->tag ? a->tag : (getenv("SLURM_JOB_ID") ? getenv("SLURM_JOB_ID") : "moba");
    Rendezvous rdv = {mg->rank, mg->world, a->endpoint, tag, mg->timeout_s};
    if (strcmp(mg->init, "fs") == 0) { rendezvous_fs(&rdv, &id, sizeof(id)); }
    else if (strcmp(mg->init, "tcp") == 0) { rendezvous_tcp(&rdv, &id, sizeof(id)); }
#ifdef USE_MPI
    else if (mg->mpi) { MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD); }
#endif
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    mg->comm = NULL;
    int slot = deadline_begin(&mg->wd->deadline, "communicator setup");
    ncclResult_t r = ncclCommInitRankConfig(&mg->comm, mg->world, id, mg->rank, &config);
    __atomic_store_n(&mg->wd->comm, mg->comm, __ATOMIC_RELEASE);  // from now on an expiry aborts the setup
    nccl_wait(r, mg, slot, "communicator setup", __FILE__, __LINE__);
}
#endif // MULTI_GPU

// ---------------------------------------------------------------------------------------------------
// setup and teardown

static inline MultiGpu multi_gpu_init(const MultiGpuArgs *a) {
    MultiGpu mg;
    memset(&mg, 0, sizeof(mg));
    mg.timeout_s = a->timeout_s > 0 ? a->timeout_s : 300.0f;
    const char *init = a->init ? a->init : "auto";
    if (strcmp(init, "auto") == 0) {
#ifdef USE_MPI
        init = getenv("OMPI_COMM_WORLD_SIZE") ? "mpi" : "local";
#else
        init = "local";
#endif
    }
    if (strcmp(init, "mpi") == 0) {
#ifdef USE_MPI
        MPI_Init(NULL, NULL);
        MPI_Comm_rank(MPI_COMM_WORLD, &mg.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &mg.world);
        MPI_Comm node;  // the ranks sharing this host: the local rank is this rank's place among them
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, mg.rank, MPI_INFO_NULL, &node);
        MPI_Comm_rank(node, &mg.local_rank);
        MPI_Comm_free(&node);
        mg.mpi = 1; mg.init = "mpi"; mg.launcher = "MPI_COMM_WORLD";
#else
        die("init 'mpi': this build has no MPI (NO_USE_MPI=1 or no mpicc); use the fs or tcp rendezvous");
#endif
    } else if (strcmp(init, "fs") == 0 || strcmp(init, "tcp") == 0 || strcmp(init, "single") == 0 || strcmp(init, "local") == 0) {
        ProcessEnv e = process_env_detect();
        mg.rank = e.rank; mg.world = e.world; mg.local_rank = e.local_rank; mg.launcher = e.source;
        mg.init = strcmp(init, "fs") == 0 ? "fs" : strcmp(init, "tcp") == 0 ? "tcp" : strcmp(init, "single") == 0 ? "single" : "local";
        int alone = strcmp(mg.init, "single") == 0 || strcmp(mg.init, "local") == 0;
        if (mg.world > 1 && alone) {
            die("rank %d: world size %d (from %s) needs a way to meet: mpi (MPI build), fs or tcp", mg.rank, mg.world, e.source);
        }
        if (!alone && (a->endpoint == NULL || a->endpoint[0] == '\0')) {
            die("init '%s' needs an endpoint: %s", mg.init, strcmp(mg.init, "fs") == 0 ? "a directory every rank sees" : "host:port of rank 0");
        }
    } else {
        die("init '%s': must be auto, local, single, mpi, fs or tcp", init);
    }
#ifndef MULTI_GPU
    if (mg.world > 1) { die("rank %d: world size %d, but this build has no NCCL (NO_MULTI_GPU=1 or no nccl.h)", mg.rank, mg.world); }
#endif
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);  // creates no context: nothing touches a GPU before cudaSetDevice
    if (err != cudaSuccess || count == 0) { die("rank %d: no CUDA GPU found (%s)", mg.rank, err != cudaSuccess ? cudaGetErrorString(err) : "0 devices"); }
    mg.device = a->device >= 0 ? a->device : mg.local_rank;
    if (mg.device >= count) { die("rank %d (local rank %d) wants CUDA device %d, but %d are visible", mg.rank, mg.local_rank, mg.device, count); }
    cudaCheck(cudaSetDevice(mg.device));
    cudaCheck(cudaStreamCreateWithFlags(&mg.comm_stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&mg.main_mark, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&mg.comm_mark, cudaEventDisableTiming));
    cudaCheck(cudaMalloc(&mg.scratch, sizeof(uint64_t) * (size_t)mg.world));
#ifdef MULTI_GPU
    if (strcmp(mg.init, "local") != 0) {
        multi_gpu_watchdog_start(&mg);
        multi_gpu_comm_init(&mg, a);
        multi_gpu_poller_start(&mg);
        mg.nccl = 1;
    }
#endif
    return mg;
}

static inline void multi_gpu_print(const MultiGpu *mg) {
    printf("rank %d of %d (local rank %d, GPU %d), init %s%s, ranks from %s, collective timeout %g s\n", mg->rank, mg->world,
           mg->local_rank, mg->device, mg->init, mg->nccl ? "" : " (no NCCL)", mg->launcher, mg->timeout_s);
}

static inline void multi_gpu_free(MultiGpu *mg) {
    cudaCheck(cudaDeviceSynchronize());
#ifdef MULTI_GPU
    if (mg->nccl) { multi_gpu_watchdog_stop(mg); }
#endif
    cudaCheck(cudaFree(mg->scratch));
    cudaCheck(cudaEventDestroy(mg->main_mark));
    cudaCheck(cudaEventDestroy(mg->comm_mark));
    cudaCheck(cudaStreamDestroy(mg->comm_stream));
#ifdef USE_MPI
    if (mg->mpi) { MPI_Finalize(); }
#endif
    memset(mg, 0, sizeof(*mg));
}

// ---------------------------------------------------------------------------------------------------
// collectives, each enqueued on `stream` and watched. In place when out == in (all-reduce), when
// shard == full + rank * shard_n (reduce-scatter, all-gather).

static inline void copy_if_distinct(void *dst, const void *src, size_t bytes, cudaStream_t stream) {
    if (dst != src) { cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream)); }
}

template <typename T> void multi_gpu_all_reduce_mean(MultiGpu *mg, T *out, const T *in, size_t n, cudaStream_t stream) {
#ifdef MULTI_GPU
    if (mg->nccl) {
        ncclCheck(mg, ncclAllReduce(in, out, n, nccl_type(in), ncclAvg, mg->comm, stream));
        multi_gpu_watch(mg, stream, "all-reduce");
        return;
    }
#endif
    copy_if_distinct(out, in, n * sizeof(T), stream);
}

// full: world * shard_n elements on every rank; shard gets the mean over ranks of this rank's part.
template <typename T> void multi_gpu_reduce_scatter_mean(MultiGpu *mg, T *shard, const T *full, size_t shard_n, cudaStream_t stream) {
#ifdef MULTI_GPU
    if (mg->nccl) {
        ncclCheck(mg, ncclReduceScatter(full, shard, shard_n, nccl_type(full), ncclAvg, mg->comm, stream));
        multi_gpu_watch(mg, stream, "reduce-scatter");
        return;
    }
#endif
    copy_if_distinct(shard, full, shard_n * sizeof(T), stream);
}

// full (world * shard_n elements) becomes every rank's shard, in rank order.
template <typename T> void multi_gpu_all_gather(MultiGpu *mg, T *full, const T *shard, size_t shard_n, cudaStream_t stream) {
#ifdef MULTI_GPU
    if (mg->nccl) {
        ncclCheck(mg, ncclAllGather(shard, full, shard_n, nccl_type(shard), mg->comm, stream));
        multi_gpu_watch(mg, stream, "all-gather");
        return;
    }
#endif
    copy_if_distinct(full, shard, shard_n * sizeof(T), stream);
}

// ---------------------------------------------------------------------------------------------------
// Buckets: the backward calls multi_gpu_reduce_bucket once a bucket's gradients (e.g. one layer's slice
// of every tensor) are complete; the reduction runs on the comm stream while the backward goes on with
// the next layer. The optimizer waits with multi_gpu_main_wait_comm. Only the last micro-step of a step
// reduces: earlier micro-steps just accumulate into the local gradients.

// The comm stream waits for everything enqueued on `main` so far.
static inline void multi_gpu_comm_wait_main(MultiGpu *mg, cudaStream_t main) {
    cudaCheck(cudaEventRecord(mg->main_mark, main));
    cudaCheck(cudaStreamWaitEvent(mg->comm_stream, mg->main_mark, 0));
}

// `main` waits for everything enqueued on the comm stream so far.
static inline void multi_gpu_main_wait_comm(MultiGpu *mg, cudaStream_t main) {
    cudaCheck(cudaEventRecord(mg->comm_mark, mg->comm_stream));
    cudaCheck(cudaStreamWaitEvent(main, mg->comm_mark, 0));
}

// In-place sharding needs every slice to split evenly: shard r of a slice is [r * n / world, (r+1) * n / world).
static inline void multi_gpu_check_divisible(const MultiGpu *mg, const size_t *counts, int n_slices) {
    for (int i = 0; i < n_slices; i++) {
        if (counts[i] % (size_t)mg->world != 0) {
            die("ZeRO-1: bucket slice %d has %zu elements, not divisible by the world size %d", i, counts[i], mg->world);
        }
    }
}

static inline void multi_gpu_group_start(MultiGpu *mg) {
#ifdef MULTI_GPU
    if (mg->nccl) {
        ncclCheck(mg, ncclGroupStart());
        mg->grouped = 1;
    }
#endif
}

static inline void multi_gpu_group_end(MultiGpu *mg, cudaStream_t stream, const char *what) {
#ifdef MULTI_GPU
    if (mg->nccl) {
        mg->grouped = 0;
        ncclCheck(mg, ncclGroupEnd());
        multi_gpu_watch(mg, stream, what);
    }
#endif
}

// zero = 0: each slice becomes its mean over ranks. zero = 1 (ZeRO-1): only this rank's shard of each
// slice does (zero_shard_range of the slice); the rest of the slice is left stale.
template <typename T> void multi_gpu_reduce_bucket(MultiGpu *mg, T *const *slices, const size_t *counts, int n_slices, int zero, cudaStream_t main) {
    if (zero) { multi_gpu_check_divisible(mg, counts, n_slices); }
    multi_gpu_comm_wait_main(mg, main);
    multi_gpu_group_start(mg);
    for (int i = 0; i < n_slices; i++) {
        size_t start, count;
        zero_shard_range(counts[i], mg->rank, mg->world, &start, &count);
        if (zero) { multi_gpu_reduce_scatter_mean(mg, slices[i] + start, slices[i], count, mg->comm_stream); }
        else { multi_gpu_all_reduce_mean(mg, slices[i], slices[i], counts[i], mg->comm_stream); }
    }
    multi_gpu_group_end(mg, mg->comm_stream, zero ? "bucket reduce-scatter" : "bucket all-reduce");
}

// ZeRO-1 after the sharded update: every rank's shard of each slice is copied to all ranks, on `stream`.
template <typename T> void multi_gpu_gather_bucket(MultiGpu *mg, T *const *slices, const size_t *counts, int n_slices, cudaStream_t stream) {
    multi_gpu_check_divisible(mg, counts, n_slices);
    multi_gpu_group_start(mg);
    for (int i = 0; i < n_slices; i++) {
        size_t start, count;
        zero_shard_range(counts[i], mg->rank, mg->world, &start, &count);
        multi_gpu_all_gather(mg, slices[i], slices[i] + start, count, stream);
    }
    multi_gpu_group_end(mg, stream, "bucket all-gather");
}

// ---------------------------------------------------------------------------------------------------
// barrier, scalar mean, checksum

// Returns once every rank got here and this rank's earlier collectives finished (watched).
static inline void multi_gpu_barrier(MultiGpu *mg) {
    multi_gpu_all_reduce_mean(mg, (float *)mg->scratch, (const float *)mg->scratch, 1, mg->comm_stream);
    cudaCheck(cudaStreamSynchronize(mg->comm_stream));
}

// Mean of one host value over ranks (training and validation loss, flags), in double: at world 1 it is x.
static inline double multi_gpu_mean_scalar(MultiGpu *mg, double x) {
    double *d = (double *)mg->scratch;
    cudaCheck(cudaMemcpyAsync(d, &x, sizeof(double), cudaMemcpyHostToDevice, mg->comm_stream));
    multi_gpu_all_reduce_mean(mg, d, d, 1, mg->comm_stream);
    cudaCheck(cudaMemcpyAsync(&x, d, sizeof(double), cudaMemcpyDeviceToHost, mg->comm_stream));
    cudaCheck(cudaStreamSynchronize(mg->comm_stream));
    return x;
}

// Sum over 16-bit words of splitmix64(index, word): order-free (so atomics are deterministic) and any
// changed word changes it except with probability 2^-64.
__global__ void checksum_kernel(uint64_t *sum, const uint16_t *words, size_t n) {
    uint64_t acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = ((uint64_t)i << 16 | words[i]) + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        acc += z ^ (z >> 31);
    }
    for (int off = 16; off > 0; off >>= 1) { acc += __shfl_xor_sync(0xffffffffu, acc, off); }
    if ((threadIdx.x & 31) == 0) { atomicAdd((unsigned long long *)sum, (unsigned long long)acc); }
}

// Checksum of `bytes` bytes of device memory (a multiple of 2), compared across ranks: any difference
// is fatal on every rank, with all ranks' values named. Returns the checksum.
static inline uint64_t multi_gpu_checksum_check(MultiGpu *mg, const void *buf, size_t bytes, const char *what) {
    if (bytes % 2 != 0) { die("checksum of '%s': %zu bytes is not a whole number of 16-bit words", what, bytes); }
    uint64_t *mine = mg->scratch + mg->rank;
    cudaCheck(cudaMemsetAsync(mine, 0, sizeof(uint64_t), mg->comm_stream));
    checksum_kernel<<<264, 256, 0, mg->comm_stream>>>(mine, (const uint16_t *)buf, bytes / 2);
    cudaCheckLaunch();
    multi_gpu_all_gather(mg, mg->scratch, mine, 1, mg->comm_stream);
    uint64_t *all = (uint64_t *)malloc_check(sizeof(uint64_t) * (size_t)mg->world);
    cudaCheck(cudaMemcpyAsync(all, mg->scratch, sizeof(uint64_t) * (size_t)mg->world, cudaMemcpyDeviceToHost, mg->comm_stream));
    cudaCheck(cudaStreamSynchronize(mg->comm_stream));
    uint64_t sum = all[mg->rank];
    int *agrees = (int *)calloc_check((size_t)mg->world, sizeof(int)), any = 0;
    for (int r = 0; r < mg->world; r++) { agrees[r] = all[r] == all[0]; any |= !agrees[r]; }
    if (any) {
        char ranks[256], list[512] = "";
        rdv_missing_list(ranks, sizeof(ranks), agrees, mg->world);  // the ranks that do not agree
        for (int i = 0; i < mg->world && i < 16; i++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s%d:%016llx", i ? " " : "", i, (unsigned long long)all[i]);
        }
        die("rank %d: %s differ across ranks: ranks %s differ from rank 0 (checksums %s): the ranks have drifted apart",
            mg->rank, what, ranks, list);
    }
    free(agrees);
    free(all);
    return sum;
}

#endif // LLMC_MULTI_GPU_CUH
