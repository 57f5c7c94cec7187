/* A tight getpid() loop: the event source of the overhead, consume and trace benchmarks.
 *
 * Compiled at benchmark time (cc -O2) into a temporary directory. Every iteration is one
 * real getpid system call (syscall(SYS_getpid), never a cached value), so tp_btf/sys_enter
 * fires once per iteration and nothing else runs in the loop.
 *
 *   getpid_loop nr           print SYS_getpid (the syscall number tp:sys_enter sees as `id`)
 *   getpid_loop n COUNT      run COUNT iterations now; print "COUNT WALL_NS CPU_NS"
 *   getpid_loop t SECONDS    run for SECONDS now; print "ITERATIONS WALL_NS CPU_NS"
 *   getpid_loop serve        read commands from stdin, one a line ("n COUNT" or "t SECONDS"),
 *                            answer each with "ITERATIONS WALL_NS CPU_NS"; stop at EOF. Lets a
 *                            benchmark learn the pid, load programs filtered on it, then start.
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

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
/* This thread's CPU time: on a loaded machine, the time other tasks ran is not counted. A
 * BPF program on sys_enter runs in the traced task's context, so its cost is counted. */
static long long cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static void run_count(long long count) {
    long long cpu = cpu_ns(), start = now_ns();
    for (long long i = 0; i < count; i++)
        syscall(SYS_getpid);
    long long elapsed = now_ns() - start;
    printf("%lld %lld %lld\n", count, elapsed, cpu_ns() - cpu);
    fflush(stdout);
}

static void run_time(double seconds) {
    long long cpu = cpu_ns(), start = now_ns(), stop = start + (long long)(seconds * 1e9), done = 0, t = start;
    while (t < stop) {
        for (int i = 0; i < 1024; i++)
            syscall(SYS_getpid);
        done += 1024;
        t = now_ns(); /* vDSO on x86_64 and aarch64: no system call */
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
        printf("%d\n", (int)SYS_getpid);
        return 0;
    }
    if (argc == 3)
        return command(argv[1], argv[2]) ? 2 : 0;
    if (argc == 2 && strcmp(argv[1], "serve") == 0) {
        char line[128], mode[16], arg[64];
        while (fgets(line, sizeof line, stdin)) {
            if (sscanf(line, "%15s %63s", mode, arg) != 2 || command(mode, arg)) {
                fprintf(stderr, "getpid_loop: bad command: %s", line);
                return 2;
            }
        }
        return 0;
    }
    fprintf(stderr, "usage: getpid_loop nr | n COUNT | t SECONDS | serve\n");
    return 2;
}
