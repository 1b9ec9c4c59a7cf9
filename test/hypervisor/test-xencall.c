/*
 * A test hypervisor behind libxencall's ABI. It exports the symbols of Debian's libxencall1
 * that xen-pmem uses, with the same signatures, and answers hypercalls the way the hypervisors
 * the daemon may meet would: a Xen with XENPF_pmem (platform op 67, /srv/work/spec and
 * docs/hypercall.md), upstream Xen 4.17 (no op 67, no op 64), upstream Xen 4.20 (op 64 is
 * XENPF_get_dom0_console, no op 67) and a few failure modes. Point XEN_PMEM_LIBXENCALL at the
 * built library to run the daemon's real koffi path without a Dom0.
 *
 * Every knob is read from the environment on every call, so one test process can switch modes:
 *   TEST_XEN_MODE      pmem (default), enosys, dom0-console, enomem-once, ebusy-once, ebusy,
 *                      eperm, slow, not-dom0
 *   TEST_XEN_STATE     file keeping the regions added (and whether ENOMEM or EBUSY was given),
 *                      so that a second process sees what an earlier one added, as Xen would
 *   TEST_XEN_LOG       file that gets one line per hypercall
 *   TEST_XEN_DELAY_MS  per-call delay in mode slow, and of the add TEST_XEN_SLOW_SPFN names
 *   TEST_XEN_SLOW_SPFN start PFN (hex) of the one region whose add takes TEST_XEN_DELAY_MS, in
 *                      any mode: one slow device among fast ones
 *   TEST_XEN_HOLD_FILE with TEST_XEN_SLOW_SPFN: that add, holding the lock, waits until this
 *                      file exists instead of for a time, so a test can say what happens during
 *                      it by order, not by the clock. The wait comes after Xen decided (a region
 *                      it took is in the state file), before the answer returns and the call is
 *                      logged: a test can kill the daemon between Xen taking a region and the
 *                      daemon hearing of it
 *
 * XENPF_pmem's sub-operations, as far as a stand-in without domains can model them: add (rules
 * 1-6 with the reason codes of the spec, EEXIST for an identical re-add), region (what is held,
 * the chunks its tables take where it lies, its free data frames), owner (no domain holds any
 * frame here: DOMID_INVALID), assign (Xen's checks in its order: a range, inside one data range
 * held, then the domain, which never exists here: ESRCH no_such_domain), and EOPNOTSUPP
 * bad_command for any other sub-operation.
 *
 * Platform ops run one at a time, as under Xen's xenpf_lock, and the time an add takes is spent
 * holding that lock, as Xen builds its tables under it. Calls can come from several threads at
 * once (the daemon makes them from libuv's thread pool); xen_version takes no lock, as in Xen.
 *
 * Rules 1-6 below must stay identical to checkPmemAddLikeXen in src/xen/interfaces/xenpf-pmem.ts.
 */

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
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
#define XENPF_INTERFACE_VERSION 0x03000001u
#define XENPF_GET_DOM0_CONSOLE 64
#define XENPF_PMEM 67
#define XENPF_PMEM_ABI 1
#define XENPF_PMEM_add 1
#define XENPF_PMEM_region 2
#define XENPF_PMEM_owner 3
#define XENPF_PMEM_assign 4
#define REGION_ALIGN_PAGES 512u
#define DOMID_INVALID 0x7ff4u
/* Past this an add is ENOMEM; benchmarks add hundreds of regions to one hypervisor. */
#define MAX_REGIONS 4096

/* XENPF_PMEM_R_*: the reasons this stand-in gives. */
enum reason {
    R_none = 0, R_empty_range = 1, R_outside_region = 2, R_reserved_data_overlap = 3,
    R_reserved_too_small = 4, R_overlaps_added_region = 5, R_region_not_aligned = 6,
    R_already_added = 7, R_mapped = 16, R_busy = 19, R_no_memory = 18, R_no_such_region = 21,
    R_not_data = 22, R_no_such_domain = 24, R_bad_command = 27,
};

/* Offsets inside struct xenpf_pmem, from the start of the platform op. */
#define PMEM_CMD 8
#define PMEM_ABI 12
#define PMEM_REASON 14
#define PMEM_U 16

struct layout {
    uint64_t spfn, epfn, rsv_spfn, rsv_epfn, data_spfn, data_epfn;
};

struct hypervisor_state {
    struct layout added[MAX_REGIONS];
    unsigned nr_added;
    int enomem_given;
    int ebusy_given;
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
    return env_or("TEST_XEN_MODE", "pmem");
}

static int mode_is(const char *name)
{
    return strcmp(mode(), name) == 0;
}

static int mode_known(void)
{
    static const char *const modes[] = {
        "pmem", "enosys", "dom0-console", "enomem-once", "ebusy-once", "ebusy", "eperm", "slow",
        "not-dom0",
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
    case ENOENT: return "ENOENT";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "E?";
    }
}

/*
 * Without TEST_XEN_STATE the regions live in this process only, which is what a single test
 * needs; with it they survive a "restart" of the daemon the way Xen's own table does. The file is
 * append-only, one line per change ("added" and six PFNs, "enomem-given", "ebusy-given"), each
 * written with one write(2), so a daemon killed in the middle of a call leaves whole lines; each
 * call reads only what was appended since the last (a thousand adds would otherwise parse and
 * rewrite the whole table a thousand times). A file that shrank or was replaced is read afresh;
 * one that is gone is an empty hypervisor (a test's reboot).
 */
static struct hypervisor_state memory_state;

static struct {
    int known;
    dev_t dev;
    ino_t ino;
    off_t offset;
} seen;

static void apply_line(struct hypervisor_state *state, const char *line)
{
    struct layout r;
    if (strncmp(line, "enomem-given", 12) == 0)
        state->enomem_given = 1;
    else if (strncmp(line, "ebusy-given", 11) == 0)
        state->ebusy_given = 1;
    else if (sscanf(line, "added %" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64,
                    &r.spfn, &r.epfn, &r.rsv_spfn, &r.rsv_epfn, &r.data_spfn, &r.data_epfn) == 6 &&
             state->nr_added < MAX_REGIONS)
        state->added[state->nr_added++] = r;
}

/* The hypervisor's state as it is now; every platform op runs under xenpf_lock. */
static struct hypervisor_state *load_state(void)
{
    const char *path = getenv("TEST_XEN_STATE");
    struct stat st;
    if (!path || !*path)
        return &memory_state;
    if (stat(path, &st) != 0) {
        memset(&memory_state, 0, sizeof(memory_state));
        seen.known = 0;
        return &memory_state;
    }
    if (!seen.known || st.st_dev != seen.dev || st.st_ino != seen.ino || st.st_size < seen.offset) {
        memset(&memory_state, 0, sizeof(memory_state));
        seen.known = 1, seen.dev = st.st_dev, seen.ino = st.st_ino, seen.offset = 0;
    }
    if (st.st_size == seen.offset)
        return &memory_state;
    FILE *file = fopen(path, "r");
    if (!file)
        return &memory_state;
    char line[256];
    if (fseeko(file, seen.offset, SEEK_SET) == 0) {
        while (fgets(line, sizeof(line), file)) {
            size_t length = strlen(line);
            if (length == 0 || line[length - 1] != '\n')
                break; /* a line still being written: read it next time */
            apply_line(&memory_state, line);
            seen.offset += (off_t)length;
        }
    }
    fclose(file);
    return &memory_state;
}

/* Records one change: appended to the file (and read back by load_state), or kept in memory. */
static void record_change(const char *line)
{
    const char *path = getenv("TEST_XEN_STATE");
    if (!path || !*path) {
        apply_line(&memory_state, line);
        return;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0)
        return;
    ssize_t written = write(fd, line, strlen(line));
    (void)written;
    close(fd);
    load_state();
}

static void record_added(const struct layout *r)
{
    char line[256];
    snprintf(line, sizeof(line), "added %" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64 "\n",
             r->spfn, r->epfn, r->rsv_spfn, r->rsv_epfn, r->data_spfn, r->data_epfn);
    record_change(line);
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

static uint16_t read_u16_le(const unsigned char *bytes)
{
    return (uint16_t)(bytes[0] | bytes[1] << 8);
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

static void write_u64_le(unsigned char *bytes, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        bytes[i] = (value >> (8 * i)) & 0xff;
}

static int ranges_overlap(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
    return s1 < e2 && s2 < e1;
}

static int same_layout(const struct layout *a, const struct layout *b)
{
    return a->spfn == b->spfn && a->epfn == b->epfn && a->rsv_spfn == b->rsv_spfn &&
           a->rsv_epfn == b->rsv_epfn && a->data_spfn == b->data_spfn && a->data_epfn == b->data_epfn;
}

/*
 * The first broken rule (1-6) of an add, or 0 when it is valid; *reason gets its XENPF_PMEM_R_*
 * and *error its errno. An identical region already added is rule 5's EEXIST already_added.
 */
static int broken_rule(const struct layout *op, const struct hypervisor_state *state,
                       int *reason, int *error)
{
    *error = EINVAL;
    if (!(op->spfn < op->epfn) || !(op->rsv_spfn < op->rsv_epfn) || !(op->data_spfn < op->data_epfn))
        return *reason = R_empty_range, 1;

    if (op->rsv_spfn < op->spfn || op->rsv_epfn > op->epfn ||
        op->data_spfn < op->spfn || op->data_epfn > op->epfn)
        return *reason = R_outside_region, 2;

    if (ranges_overlap(op->rsv_spfn, op->rsv_epfn, op->data_spfn, op->data_epfn))
        return *reason = R_reserved_data_overlap, 3;

    /* (32 * total) >> 12 and (8 * total) >> 12, as shifts so that no product can wrap. */
    uint64_t total = op->epfn - op->spfn;
    uint64_t needed = (total >> 7) + (total >> 9);
    if (op->rsv_epfn - op->rsv_spfn < needed) {
        *error = ENOSPC;
        return *reason = R_reserved_too_small, 4;
    }

    for (unsigned i = 0; i < state->nr_added; i++) {
        if (same_layout(op, &state->added[i])) {
            *error = EEXIST;
            return *reason = R_already_added, 5;
        }
        if (ranges_overlap(op->spfn, op->epfn, state->added[i].spfn, state->added[i].epfn))
            return *reason = R_overlaps_added_region, 5;
    }

    if (op->spfn % REGION_ALIGN_PAGES || op->epfn % REGION_ALIGN_PAGES)
        return *reason = R_region_not_aligned, 6;

    *error = 0;
    *reason = R_none;
    return 0;
}

/* 2 MiB chunks of a table of `entry` bytes per frame that cover the frames [spfn, epfn). */
static uint32_t table_chunks(uint64_t spfn, uint64_t epfn, unsigned entry)
{
    uint64_t first = spfn * entry >> 21, last = ((epfn * entry) - 1) >> 21;
    return (uint32_t)(last - first + 1);
}

static void version_of_mode(int *major, int *minor, const char **extra)
{
    if (mode_is("enosys")) {
        *major = 4, *minor = 17, *extra = ".7";
    } else if (mode_is("dom0-console")) {
        *major = 4, *minor = 20, *extra = ".4";
    } else {
        *major = 4, *minor = 17, *extra = ".7-pmem";
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

/* Xen 4.18 and later's XENPF_get_dom0_console: fills a VESA framebuffer description into the union. */
static long dom0_console(unsigned char *op)
{
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

static long pmem_add(unsigned char *op, int *reason)
{
    const unsigned char *u = op + PMEM_U;
    struct layout add = {
        read_u64_le(u), read_u64_le(u + 8), read_u64_le(u + 16),
        read_u64_le(u + 24), read_u64_le(u + 32), read_u64_le(u + 40),
    };
    /* Not on the stack: koffi's asynchronous calls run on a small one; platform ops hold xenpf_lock. */
    const struct hypervisor_state *state = load_state();
    int error, rule;
    long ret = 0;

    rule = broken_rule(&add, state, reason, &error);
    if (rule)
        ret = -error;
    /* Exhaustion and contention come after validation, as in Xen's add path. */
    else if (mode_is("ebusy"))
        *reason = R_mapped, ret = -EBUSY;
    else if (mode_is("ebusy-once") && !state->ebusy_given) {
        record_change("ebusy-given\n");
        *reason = R_busy, ret = -EBUSY;
    } else if ((mode_is("enomem-once") && !state->enomem_given) || state->nr_added == MAX_REGIONS) {
        if (!state->enomem_given)
            record_change("enomem-given\n");
        *reason = R_no_memory, ret = -ENOMEM;
    } else {
        record_added(&add);
    }
    /*
     * The slow add: Xen has decided (and, for a success, holds the region) but its answer has not
     * reached the caller; a caller killed meanwhile leaves Xen holding it, as in real Xen, where
     * the hypercall completes whatever happens to the process that made it.
     */
    if (slow_region(add.spfn))
        hold_or_pause();
    log_line("platform_op cmd=%d sub=add spfn=0x%" PRIx64 " epfn=0x%" PRIx64 " rsv_spfn=0x%" PRIx64
             " rsv_epfn=0x%" PRIx64 " data_spfn=0x%" PRIx64 " data_epfn=0x%" PRIx64
             " mode=%s ret=%ld %s reason=%d rule=%d",
             XENPF_PMEM, add.spfn, add.epfn, add.rsv_spfn, add.rsv_epfn, add.data_spfn, add.data_epfn,
             mode(), ret, errno_name(ret < 0 ? (int)-ret : 0), *reason, rule);
    return ret;
}

static long pmem_region(unsigned char *op, int *reason)
{
    unsigned char *u = op + PMEM_U;
    uint32_t index = read_u32_le(u);
    const struct hypervisor_state *state = load_state();
    long ret = 0;

    write_u32_le(u + 4, state->nr_added);
    if (index >= state->nr_added) {
        *reason = R_no_such_region, ret = -ENOENT;
    } else {
        const struct layout *r = &state->added[index];
        write_u64_le(u + 8, r->spfn);
        write_u64_le(u + 16, r->epfn);
        write_u64_le(u + 24, r->rsv_spfn);
        write_u64_le(u + 32, r->rsv_epfn);
        write_u64_le(u + 40, r->data_spfn);
        write_u64_le(u + 48, r->data_epfn);
        write_u32_le(u + 56, table_chunks(r->spfn, r->epfn, 32));
        write_u32_le(u + 60, table_chunks(r->spfn, r->epfn, 8));
        write_u32_le(u + 64, table_chunks(r->spfn, r->epfn, 4));
        write_u32_le(u + 68, 0);
        /* No domains here: every data frame is free. */
        write_u64_le(u + 72, r->data_epfn - r->data_spfn);
    }
    log_line("platform_op cmd=%d sub=region index=0x%" PRIx32 " nr_regions=%u mode=%s ret=%ld %s reason=%d",
             XENPF_PMEM, index, state->nr_added, mode(), ret, errno_name(ret < 0 ? (int)-ret : 0), *reason);
    return ret;
}

static long pmem_owner(unsigned char *op, int *reason)
{
    unsigned char *u = op + PMEM_U;
    uint64_t pfn = read_u64_le(u);
    const struct hypervisor_state *state = load_state();
    long ret = -EINVAL;

    *reason = R_not_data;
    for (unsigned i = 0; i < state->nr_added; i++) {
        if (pfn >= state->added[i].data_spfn && pfn < state->added[i].data_epfn) {
            /* No domain holds a frame here: no run at or after pfn. */
            write_u64_le(u + 8, 0);
            write_u64_le(u + 16, 0);
            write_u16_le(u + 24, DOMID_INVALID);
            *reason = R_none, ret = 0;
            break;
        }
    }
    log_line("platform_op cmd=%d sub=owner pfn=0x%" PRIx64 " mode=%s ret=%ld %s reason=%d",
             XENPF_PMEM, pfn, mode(), ret, errno_name(ret < 0 ? (int)-ret : 0), *reason);
    return ret;
}

static long pmem_assign(unsigned char *op, int *reason)
{
    unsigned char *u = op + PMEM_U;
    uint64_t mfn = read_u64_le(u), gfn = read_u64_le(u + 8), nr = read_u64_le(u + 16),
             done = read_u64_le(u + 24);
    uint16_t domid = read_u16_le(u + 32);
    const struct hypervisor_state *state = load_state();
    long ret = -EINVAL;

    *reason = R_not_data;
    if (nr != 0 && done <= nr && mfn + nr > mfn && gfn + nr > gfn) {
        for (unsigned i = 0; i < state->nr_added; i++) {
            if (mfn >= state->added[i].data_spfn && mfn + nr <= state->added[i].data_epfn) {
                /* The frames are data frames; no domain exists here to take them. */
                *reason = R_no_such_domain, ret = -ESRCH;
                break;
            }
        }
    }
    log_line("platform_op cmd=%d sub=assign mfn=0x%" PRIx64 " gfn=0x%" PRIx64 " nr=0x%" PRIx64
             " domid=%u mode=%s ret=%ld %s reason=%d", XENPF_PMEM, mfn, gfn, nr, domid, mode(), ret,
             errno_name((int)-ret), *reason);
    return ret;
}

static long platform_op(unsigned char *op)
{
    uint32_t cmd = read_u32_le(op), interface_version = read_u32_le(op + 4);
    long ret;

    /* Same order as Xen: privilege, interface version, then the operation itself. */
    if (mode_is("eperm"))
        ret = -EPERM;
    else if (interface_version != XENPF_INTERFACE_VERSION)
        ret = -EACCES;
    else if (cmd == XENPF_GET_DOM0_CONSOLE && mode_is("dom0-console"))
        ret = dom0_console(op);
    else if (cmd == XENPF_PMEM && !mode_is("enosys") && !mode_is("dom0-console")) {
        uint32_t sub = read_u32_le(op + PMEM_CMD);
        int reason = R_none;
        if (sub == XENPF_PMEM_add)
            ret = pmem_add(op, &reason);
        else if (sub == XENPF_PMEM_region)
            ret = pmem_region(op, &reason);
        else if (sub == XENPF_PMEM_owner)
            ret = pmem_owner(op, &reason);
        else if (sub == XENPF_PMEM_assign)
            ret = pmem_assign(op, &reason);
        else {
            reason = R_bad_command, ret = -EOPNOTSUPP;
            log_line("platform_op cmd=%d sub=%" PRIu32 " mode=%s ret=%ld %s reason=%d", XENPF_PMEM, sub,
                     mode(), ret, errno_name((int)-ret), reason);
        }
        /* Every answer to a known sub-operation, and bad_command, says which ABI and why. */
        write_u16_le(op + PMEM_ABI, XENPF_PMEM_ABI);
        write_u16_le(op + PMEM_REASON, (uint16_t)reason);
        return ret;
    } else
        ret = -ENOSYS;

    log_line("platform_op cmd=%" PRIu32 " mode=%s ret=%ld %s", cmd, mode(), ret,
             errno_name(ret < 0 ? (int)-ret : 0));
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
        errno = EOPNOTSUPP;
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
