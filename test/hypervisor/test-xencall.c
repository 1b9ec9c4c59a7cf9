/*
 * A test hypervisor behind libxencall's ABI. It exports the symbols of Debian's libxencall1
 * that xen-pmem uses, with the same signatures, and answers hypercalls the way the hypervisors
 * the daemon may meet would: the pmem RFC hypervisor, upstream Xen 4.17 (no op 64), later Xen
 * (op 64 is XENPF_get_dom0_console) and a few failure modes. Point XEN_PMEM_LIBXENCALL at the
 * built library to run the daemon's real koffi path without a Dom0.
 *
 * Every knob is read from the environment on every call, so one test process can switch modes:
 *   TEST_XEN_MODE      rfc (default), enosys, dom0-console, dom0-console-headless,
 *                      enomem-once, eagain, eperm, slow, not-dom0
 *   TEST_XEN_STATE     file keeping the regions added (and whether ENOMEM was given), so that
 *                      a second process sees what an earlier one added, as Xen would
 *   TEST_XEN_LOG       file that gets one line per hypercall
 *   TEST_XEN_DELAY_MS  per-call delay in mode slow, and of the add TEST_XEN_SLOW_SPFN names
 *   TEST_XEN_SLOW_SPFN start PFN (hex) of the one region whose add takes TEST_XEN_DELAY_MS, in
 *                      any mode: one slow device among fast ones
 *   TEST_XEN_HOLD_FILE with TEST_XEN_SLOW_SPFN: that add, holding the lock, waits until this
 *                      file exists instead of for a time, so a test can say what happens during
 *                      it by order, not by the clock
 *
 * Platform ops run one at a time, as under Xen's xenpf_lock, and the time an add takes is spent
 * holding that lock, as Xen builds its tables under it. Calls can come from several threads at
 * once (the daemon makes them from libuv's thread pool); xen_version takes no lock, as in Xen.
 *
 * Rules 1-6 below must stay identical to checkPmemAddLikeXen in src/xen/platform-op.ts.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define HYPERVISOR_PLATFORM_OP 7
#define HYPERVISOR_XEN_VERSION 17
#define XENVER_VERSION 0
#define XENVER_EXTRAVERSION 1
#define XENVER_EXTRAVERSION_BYTES 16

#define PLATFORM_OP_BYTES 136
#define PLATFORM_OP_UNION_OFFSET 8
#define XENPF_PMEM_ADD 64
#define XENPF_INTERFACE_VERSION 0x03000001u
#define REGION_ALIGN_PAGES 512u
/* Past this an add is ENOMEM; benchmarks add hundreds of regions to one hypervisor. */
#define MAX_REGIONS 4096

struct pmem_add {
    uint64_t spfn, epfn, rsv_spfn, rsv_epfn, data_spfn, data_epfn;
};

struct region {
    uint64_t spfn, epfn;
};

struct hypervisor_state {
    struct region added[MAX_REGIONS];
    unsigned nr_added;
    int enomem_given;
};

/* Only a marker: the daemon never looks inside a handle. */
struct xencall_handle {
    unsigned open_flags;
};

static const char *env_or(const char *name, const char *fallback)
{
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

static const char *mode(void)
{
    return env_or("TEST_XEN_MODE", "rfc");
}

static int mode_is(const char *name)
{
    return strcmp(mode(), name) == 0;
}

static int mode_known(void)
{
    static const char *const modes[] = {
        "rfc", "enosys", "dom0-console", "dom0-console-headless", "enomem-once",
        "eagain", "eperm", "slow", "not-dom0",
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (mode_is(modes[i]))
            return 1;
    return 0;
}

static void log_line(const char *format, ...)
{
    const char *path = getenv("TEST_XEN_LOG");
    if (!path || !*path)
        return;
    FILE *log = fopen(path, "a");
    if (!log)
        return;
    va_list args;
    va_start(args, format);
    vfprintf(log, format, args);
    va_end(args);
    fputc('\n', log);
    fclose(log);
}

static const char *errno_name(int error)
{
    switch (error) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case ENOTSUP: return "ENOTSUP";
    default: return "E?";
    }
}

/*
 * Without TEST_XEN_STATE the regions live in this process only, which is what a single test
 * needs; with it they survive a "restart" of the daemon the way Xen's own table does.
 */
static struct hypervisor_state memory_state;

static void load_state(struct hypervisor_state *state)
{
    const char *path = getenv("TEST_XEN_STATE");
    if (!path || !*path) {
        *state = memory_state;
        return;
    }
    memset(state, 0, sizeof(*state));
    FILE *file = fopen(path, "r");
    if (!file)
        return;
    char line[128];
    while (fgets(line, sizeof(line), file)) {
        uint64_t spfn, epfn;
        if (strncmp(line, "enomem-given", 12) == 0)
            state->enomem_given = 1;
        else if (sscanf(line, "added %" SCNx64 " %" SCNx64, &spfn, &epfn) == 2 &&
                 state->nr_added < MAX_REGIONS) {
            state->added[state->nr_added].spfn = spfn;
            state->added[state->nr_added].epfn = epfn;
            state->nr_added++;
        }
    }
    fclose(file);
}

static void save_state(const struct hypervisor_state *state)
{
    const char *path = getenv("TEST_XEN_STATE");
    if (!path || !*path) {
        memory_state = *state;
        return;
    }
    /*
     * Written beside the file and renamed over it: a daemon killed in the middle of a call must
     * not leave a truncated file behind, or this hypervisor would forget regions a real Xen keeps.
     */
    char partial[4096];
    if (snprintf(partial, sizeof(partial), "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof(partial))
        return;
    FILE *file = fopen(partial, "w");
    if (!file)
        return;
    if (state->enomem_given)
        fputs("enomem-given\n", file);
    for (unsigned i = 0; i < state->nr_added; i++)
        fprintf(file, "added %" PRIx64 " %" PRIx64 "\n", state->added[i].spfn, state->added[i].epfn);
    if (fclose(file) == 0)
        rename(partial, path);
    else
        remove(partial);
}

static uint64_t read_u64_le(const unsigned char *bytes)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = (value << 8) | bytes[i];
    return value;
}

static uint32_t read_u32_le(const unsigned char *bytes)
{
    return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 |
           (uint32_t)bytes[3] << 24;
}

static void write_u16_le(unsigned char *bytes, uint16_t value)
{
    bytes[0] = value & 0xff;
    bytes[1] = value >> 8;
}

static void write_u32_le(unsigned char *bytes, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        bytes[i] = (value >> (8 * i)) & 0xff;
}

static int ranges_overlap(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
    return s1 < e2 && s2 < e1;
}

/* Returns the number of the first broken rule, or 0 when the add is valid. */
static int broken_rule(const struct pmem_add *op, const struct hypervisor_state *state)
{
    if (!(op->spfn < op->epfn) || !(op->rsv_spfn < op->rsv_epfn) || !(op->data_spfn < op->data_epfn))
        return 1;

    if (op->rsv_spfn < op->spfn || op->rsv_epfn > op->epfn ||
        op->data_spfn < op->spfn || op->data_epfn > op->epfn)
        return 2;

    if (ranges_overlap(op->rsv_spfn, op->rsv_epfn, op->data_spfn, op->data_epfn))
        return 3;

    /* (32 * total) >> 12 and (8 * total) >> 12, as shifts so that no product can wrap. */
    uint64_t total = op->epfn - op->spfn;
    uint64_t needed = (total >> 7) + (total >> 9);
    if (op->rsv_epfn - op->rsv_spfn < needed)
        return 4;

    for (unsigned i = 0; i < state->nr_added; i++)
        if (ranges_overlap(op->spfn, op->epfn, state->added[i].spfn, state->added[i].epfn))
            return 5;

    if (op->spfn % REGION_ALIGN_PAGES || op->epfn % REGION_ALIGN_PAGES)
        return 6;

    return 0;
}

static void version_of_mode(int *major, int *minor, const char **extra)
{
    if (mode_is("enosys")) {
        *major = 4, *minor = 17, *extra = ".7";
    } else if (mode_is("dom0-console") || mode_is("dom0-console-headless")) {
        *major = 4, *minor = 19, *extra = ".1";
    } else {
        *major = 4, *minor = 8, *extra = "-pmem-rfc";
    }
}

static void pause_ms(void)
{
    long ms = strtol(env_or("TEST_XEN_DELAY_MS", "100"), NULL, 10);
    if (ms <= 0)
        return;
    struct timespec pause = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&pause, &pause) == -1 && errno == EINTR)
        ;
}

/* The slow add: until the test releases it (TEST_XEN_HOLD_FILE appears), or for the delay. */
static void hold_or_pause(void)
{
    const char *release = getenv("TEST_XEN_HOLD_FILE");
    if (!release || !*release) {
        pause_ms();
        return;
    }
    struct timespec tick = { 0, 2000000L };
    while (access(release, F_OK) != 0)
        nanosleep(&tick, NULL);
}

static void delay_if_slow(void)
{
    if (mode_is("slow"))
        pause_ms();
}

/* The one region whose add is slow, when TEST_XEN_SLOW_SPFN names it. */
static int slow_region(uint64_t spfn)
{
    const char *text = getenv("TEST_XEN_SLOW_SPFN");
    if (!text || !*text)
        return 0;
    return strtoull(text, NULL, 16) == spfn;
}

/* Xen's xenpf_lock: one platform op at a time, for the whole of its work. */
static pthread_mutex_t xenpf_lock = PTHREAD_MUTEX_INITIALIZER;

/* Later Xen's XENPF_get_dom0_console: fills a VESA framebuffer description into the union. */
static long dom0_console(unsigned char *op)
{
    if (mode_is("dom0-console-headless"))
        return -ENODEV;
    unsigned char *info = op + PLATFORM_OP_UNION_OFFSET;
    memset(info, 0, 32);
    info[0] = 0x02;                  /* video type: VESA linear framebuffer */
    write_u16_le(info + 2, 1024);    /* width */
    write_u16_le(info + 4, 768);     /* height */
    write_u16_le(info + 6, 4096);    /* bytes per line */
    write_u16_le(info + 8, 32);      /* bits per pixel */
    write_u32_le(info + 12, 0xfd000000u); /* framebuffer base */
    write_u32_le(info + 16, 3u << 20);    /* framebuffer size */
    return 32;
}

static long platform_op(unsigned char *op)
{
    struct pmem_add add;
    uint32_t cmd, interface_version;
    const unsigned char *u = op + PLATFORM_OP_UNION_OFFSET;
    long ret = 0;
    int rule = 0;

    cmd = read_u32_le(op);
    interface_version = read_u32_le(op + 4);
    add.spfn = read_u64_le(u);
    add.epfn = read_u64_le(u + 8);
    add.rsv_spfn = read_u64_le(u + 16);
    add.rsv_epfn = read_u64_le(u + 24);
    add.data_spfn = read_u64_le(u + 32);
    add.data_epfn = read_u64_le(u + 40);

    if (cmd == XENPF_PMEM_ADD && slow_region(add.spfn))
        hold_or_pause();

    /* Same order as Xen: privilege, interface version, then the operation itself. */
    if (mode_is("eperm"))
        ret = -EPERM;
    else if (interface_version != XENPF_INTERFACE_VERSION)
        ret = -EACCES;
    else if (cmd != XENPF_PMEM_ADD || mode_is("enosys"))
        ret = -ENOSYS;
    else if (mode_is("dom0-console") || mode_is("dom0-console-headless"))
        ret = dom0_console(op);
    else {
        struct hypervisor_state state;
        load_state(&state);
        rule = broken_rule(&add, &state);
        if (rule)
            ret = -EINVAL;
        /* Exhaustion and contention come after validation, as in the RFC's add path. */
        else if (mode_is("eagain"))
            ret = -EAGAIN;
        else if (mode_is("enomem-once") && !state.enomem_given) {
            state.enomem_given = 1;
            save_state(&state);
            ret = -ENOMEM;
        } else if (state.nr_added == MAX_REGIONS)
            ret = -ENOMEM;
        else {
            state.added[state.nr_added].spfn = add.spfn;
            state.added[state.nr_added].epfn = add.epfn;
            state.nr_added++;
            save_state(&state);
        }
    }

    log_line("platform_op cmd=%" PRIu32 " spfn=0x%" PRIx64 " epfn=0x%" PRIx64 " rsv_spfn=0x%" PRIx64
             " rsv_epfn=0x%" PRIx64 " data_spfn=0x%" PRIx64 " data_epfn=0x%" PRIx64
             " mode=%s ret=%ld %s rule=%d",
             cmd, add.spfn, add.epfn, add.rsv_spfn, add.rsv_epfn, add.data_spfn, add.data_epfn,
             mode(), ret, errno_name(ret < 0 ? (int)-ret : 0), rule);
    return ret;
}

static long xen_version(uint64_t cmd, uint64_t arg)
{
    int major, minor;
    const char *extra;
    long ret;

    version_of_mode(&major, &minor, &extra);
    if (cmd == XENVER_VERSION) {
        ret = (long)major << 16 | minor;
    } else if (cmd == XENVER_EXTRAVERSION) {
        if (!arg)
            ret = -EFAULT;
        else {
            char *out = (char *)(uintptr_t)arg;
            memset(out, 0, XENVER_EXTRAVERSION_BYTES);
            strncpy(out, extra, XENVER_EXTRAVERSION_BYTES - 1);
            ret = 0;
        }
    } else {
        ret = -ENOSYS;
    }
    log_line("xen_version cmd=%" PRIu64 " mode=%s ret=%ld %s", cmd, mode(), ret,
             errno_name(ret < 0 ? (int)-ret : 0));
    return ret;
}

/* libxencall's convention: a negative hypercall result becomes -1 with errno set. */
static int hypercall(unsigned op, uint64_t arg1, uint64_t arg2)
{
    long ret;

    if (!mode_known()) {
        log_line("unknown TEST_XEN_MODE=%s", mode());
        errno = ENOTSUP;
        return -1;
    }
    if (op == HYPERVISOR_PLATFORM_OP) {
        pthread_mutex_lock(&xenpf_lock);
        delay_if_slow();
        if (!arg1)
            ret = -EFAULT;
        else
            ret = platform_op((unsigned char *)(uintptr_t)arg1);
        pthread_mutex_unlock(&xenpf_lock);
    } else if (op == HYPERVISOR_XEN_VERSION) {
        delay_if_slow();
        ret = xen_version(arg1, arg2);
    } else {
        delay_if_slow();
        log_line("hypercall op=%u ret=%d ENOSYS", op, -ENOSYS);
        ret = -ENOSYS;
    }
    if (ret < 0) {
        errno = (int)-ret;
        return -1;
    }
    return (int)ret;
}

EXPORT struct xencall_handle *xencall_open(void *logger, unsigned open_flags)
{
    (void)logger;
    if (mode_is("not-dom0")) {
        errno = ENOENT;
        return NULL;
    }
    struct xencall_handle *handle = calloc(1, sizeof(*handle));
    if (!handle) {
        errno = ENOMEM;
        return NULL;
    }
    handle->open_flags = open_flags;
    return handle;
}

EXPORT int xencall_close(struct xencall_handle *handle)
{
    free(handle);
    return 0;
}

EXPORT void *xencall_alloc_buffer(struct xencall_handle *handle, size_t size)
{
    (void)handle;
    /* Real hypercall buffers come from whole pages; calloc is enough for the ABI. */
    return calloc(1, size ? size : 1);
}

EXPORT void xencall_free_buffer(struct xencall_handle *handle, void *buffer)
{
    (void)handle;
    free(buffer);
}

EXPORT int xencall0(struct xencall_handle *handle, unsigned op)
{
    (void)handle;
    return hypercall(op, 0, 0);
}

EXPORT int xencall1(struct xencall_handle *handle, unsigned op, uint64_t arg1)
{
    (void)handle;
    return hypercall(op, arg1, 0);
}

EXPORT int xencall2(struct xencall_handle *handle, unsigned op, uint64_t arg1, uint64_t arg2)
{
    (void)handle;
    return hypercall(op, arg1, arg2);
}

EXPORT int xencall3(struct xencall_handle *handle, unsigned op, uint64_t arg1, uint64_t arg2,
                    uint64_t arg3)
{
    (void)handle, (void)arg3;
    return hypercall(op, arg1, arg2);
}

EXPORT int xencall4(struct xencall_handle *handle, unsigned op, uint64_t arg1, uint64_t arg2,
                    uint64_t arg3, uint64_t arg4)
{
    (void)handle, (void)arg3, (void)arg4;
    return hypercall(op, arg1, arg2);
}

EXPORT int xencall5(struct xencall_handle *handle, unsigned op, uint64_t arg1, uint64_t arg2,
                    uint64_t arg3, uint64_t arg4, uint64_t arg5)
{
    (void)handle, (void)arg3, (void)arg4, (void)arg5;
    return hypercall(op, arg1, arg2);
}
