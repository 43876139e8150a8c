/* Preloaded before libfaketime for `make pytest-future`.

   libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC=1 still shifts the deadline of an absolute
   clock_nanosleep on CLOCK_MONOTONIC, so Python's time.sleep() fails with EINVAL; faking the monotonic clock
   instead makes every timed lock wait (sem_clockwait) last the whole offset. This passes monotonic and boot-time
   sleeps straight to the kernel and leaves the wall clock to libfaketime. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t id, int flags, const struct timespec *req, struct timespec *rem) {
    if (id == CLOCK_MONOTONIC || id == CLOCK_BOOTTIME) {
        long r = syscall(SYS_clock_nanosleep, id, flags, req, rem);
        return r == 0 ? 0 : errno;
    }
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (!next) next = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(id, flags, req, rem);
}
