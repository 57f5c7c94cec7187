// SPDX-License-Identifier: GPL-2.0-only
/* A tight system call loop: the event source of the benchmarks.
 *
 * Compiled at benchmark time (cc -O2) into a temporary directory, as one of two loops:
 *   - by default, getpid(): each iteration one real getpid system call (syscall(SYS_getpid),
 *     never a cached value), so tp_btf/sys_enter fires once per iteration and nothing else runs
 *     in the loop (the overhead, consume and trace benchmarks);
 *   - with -DCLOSE_LOOP, close(-1): one real close system call on fd -1 (not glibc's cancellable
 *     wrapper), which the kernel passes to close_fd(unsigned int fd) as 4294967295 and which fails
 *     there at once with EBADF: one call of close_fd per iteration (vm_percall.py).
 *
 *   LOOP nr           print the syscall's number (what tp:sys_enter sees as `id`)
 *   LOOP n COUNT      run COUNT iterations now; print "COUNT WALL_NS CPU_NS"
 *   LOOP t SECONDS    run for SECONDS now; print "ITERATIONS WALL_NS CPU_NS"
 *   LOOP serve        read commands from stdin, one a line ("n COUNT" or "t SECONDS"), answer each
 *                     with "ITERATIONS WALL_NS CPU_NS"; stop at EOF. Lets a benchmark learn the
 *                     pid, load programs filtered on it, then start.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#ifdef CLOSE_LOOP
#define LOOP_NAME "close_loop"
#define LOOP_SYSCALL SYS_close
static void one_call(void) { syscall(SYS_close, -1); }
#else
#define LOOP_NAME "getpid_loop"
#define LOOP_SYSCALL SYS_getpid
static void one_call(void) { syscall(SYS_getpid); }
#endif

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
/* This thread's CPU time: on a loaded machine, the time other tasks ran is not counted. A
 * BPF program on the traced call runs in this task's context, so its cost is counted. */
static long long cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static void run_count(long long count) {
    long long cpu = cpu_ns(), start = now_ns();
    for (long long i = 0; i < count; i++)
        one_call();
    long long elapsed = now_ns() - start;
    printf("%lld %lld %lld\n", count, elapsed, cpu_ns() - cpu);
    fflush(stdout);
}

static void run_time(double seconds) {
    long long cpu = cpu_ns(), start = now_ns(), stop = start + (long long)(seconds * 1e9), done = 0, t = start;
    while (t < stop) {
        for (int i = 0; i < 256; i++)
            one_call();
        done += 256;
        /* The vDSO on x86_64 and aarch64, or a clock_gettime system call where the clock is the
         * HPET: never the traced call. */
        t = now_ns();
    }
    printf("%lld %lld %lld\n", done, t - start, cpu_ns() - cpu);
    fflush(stdout);
}

static int command(const char *mode, const char *arg) {
    if (strcmp(mode, "n") == 0)
        run_count(atoll(arg));
    else if (strcmp(mode, "t") == 0)
        run_time(atof(arg));
    else
        return -1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "nr") == 0) {
        printf("%d\n", (int)LOOP_SYSCALL);
        return 0;
    }
    if (argc == 3)
        return command(argv[1], argv[2]) ? 2 : 0;
    if (argc == 2 && strcmp(argv[1], "serve") == 0) {
        char line[128], mode[16], arg[64];
        while (fgets(line, sizeof line, stdin)) {
            if (sscanf(line, "%15s %63s", mode, arg) != 2 || command(mode, arg)) {
                fprintf(stderr, LOOP_NAME ": bad command: %s", line);
                return 2;
            }
        }
        return 0;
    }
    fprintf(stderr, "usage: " LOOP_NAME " nr | n COUNT | t SECONDS | serve\n");
    return 2;
}
