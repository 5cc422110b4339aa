/* Compiled fast path of the NetFlow collector: decode records and aggregate them in one pass.
 *
 * Python (fastpath.py) compiles each template once into a table of (offset, width) per column
 * and hands over runs of records (start offset, record count) inside a receive buffer. An Acc
 * reads every record's fields big-endian straight from the buffer and adds its bytes and
 * packets to the same aggregates aggregate.Aggregator keeps: per interface and direction, per
 * elementary agency interval (IPv4) or agency (IPv6), per protocol/service, per talker key.
 * take() hands the sums back as bytes (native uint64 keys, float64 sums) for numpy, and resets.
 *
 * Hostile input: every run is checked against the buffer before any byte is read, and the
 * layout against the record length, so no read can leave the buffer. Plain C99 and the
 * Python C API (buffer protocol only); no numpy headers, so it builds with any numpy.
 */
#define PY_SSIZE_T_CLEAN
#ifdef __linux__
#define _GNU_SOURCE  /* recvmmsg */
#endif
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

enum { C_BYTES, C_PACKETS, C_SAMPLING, C_SRC4, C_DST4, C_SRC6_HI, C_SRC6_LO, C_DST6_HI, C_DST6_LO,
       C_PROTO, C_SPORT, C_DPORT, C_IN_IF, C_OUT_IF, N_COLS };

/* protocol/service tables of aggregate.py, set once by set_tables() */
static int16_t proto_base[256];
static uint8_t port_proto[256];
static uint8_t svc_index[65536];
static Py_ssize_t n_proto_keys = 0;

/* ---- small open-addressing hash tables ---------------------------------------------------- */
static inline size_t slot_of(uint64_t key, size_t cap) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

/* uint64 key -> (bytes, packets), for the rare ifIndex >= SMALL_IF. Entries interleaved, so a
 * lookup touches one cache line. */
typedef struct { uint64_t key; double b, p; uint64_t used; } Entry;
typedef struct {
    Entry *e;
    size_t cap, n;
} Table;

static int table_init(Table *t, size_t cap) {
    t->e = calloc(cap, sizeof(Entry));
    t->cap = cap;
    t->n = 0;
    return t->e ? 0 : -1;
}

static void table_free(Table *t) {
    free(t->e);
    t->e = NULL; t->cap = t->n = 0;
}

static int table_grow(Table *t) {
    Table bigger;
    if (table_init(&bigger, t->cap * 2) < 0) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->e[i].used) continue;
        size_t s = slot_of(t->e[i].key, bigger.cap);
        while (bigger.e[s].used) s = (s + 1) & (bigger.cap - 1);
        bigger.e[s] = t->e[i];
        bigger.n++;
    }
    table_free(t);
    *t = bigger;
    return 0;
}

/* Add (b, p) to key; -1 when out of memory (nothing added then). */
static inline int table_add(Table *t, uint64_t key, double b, double p) {
    size_t s = slot_of(key, t->cap);
    while (t->e[s].used) {
        if (t->e[s].key == key) { t->e[s].b += b; t->e[s].p += p; return 0; }
        s = (s + 1) & (t->cap - 1);
    }
    if ((t->n + 1) * 2 > t->cap) {  /* load factor below 1/2: probes stay short, a free slot always exists */
        if (table_grow(t) < 0) return -1;
        s = slot_of(key, t->cap);
        while (t->e[s].used) s = (s + 1) & (t->cap - 1);
    }
    t->e[s].used = 1; t->e[s].key = key; t->e[s].b = b; t->e[s].p = p;
    t->n++;
    return 0;
}

static void table_clear(Table *t) {
    if (t->n) { memset(t->e, 0, t->cap * sizeof(Entry)); t->n = 0; }
}

/* Talker key -> bytes: the one large random-access structure of the pass, so its entries are
 * half the size of Entry (16 bytes, four per cache line). A free slot holds FREE_KEY; the key
 * FREE_KEY itself (an all-ones IPv6 /64) is summed on the side. */
#define FREE_KEY UINT64_MAX
typedef struct { uint64_t key; double b; } TEntry;
typedef struct {
    TEntry *e;
    size_t cap, n;
    int has_free_key;
    double free_key_b;
} Talkers;

static int talkers_init(Talkers *t, size_t cap) {
    t->e = malloc(cap * sizeof(TEntry));
    if (!t->e) return -1;
    memset(t->e, 0xFF, cap * sizeof(TEntry));  /* every key FREE_KEY */
    t->cap = cap; t->n = 0; t->has_free_key = 0; t->free_key_b = 0;
    return 0;
}

static void talkers_free(Talkers *t) {
    free(t->e);
    t->e = NULL; t->cap = t->n = 0;
}

static int talkers_grow(Talkers *t) {
    Talkers bigger;
    if (talkers_init(&bigger, t->cap * 2) < 0) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->e[i].key == FREE_KEY) continue;
        size_t s = slot_of(t->e[i].key, bigger.cap);
        while (bigger.e[s].key != FREE_KEY) s = (s + 1) & (bigger.cap - 1);
        bigger.e[s] = t->e[i];
    }
    bigger.n = t->n; bigger.has_free_key = t->has_free_key; bigger.free_key_b = t->free_key_b;
    talkers_free(t);
    *t = bigger;
    return 0;
}

static inline int talkers_add(Talkers *t, uint64_t key, double b) {
    if (key == FREE_KEY) { t->has_free_key = 1; t->free_key_b += b; return 0; }
    size_t s = slot_of(key, t->cap);
    while (t->e[s].key != FREE_KEY) {
        if (t->e[s].key == key) { t->e[s].b += b; return 0; }
        s = (s + 1) & (t->cap - 1);
    }
    if ((t->n + 1) * 2 > t->cap) {
        if (talkers_grow(t) < 0) return -1;
        s = slot_of(key, t->cap);
        while (t->e[s].key != FREE_KEY) s = (s + 1) & (t->cap - 1);
    }
    t->e[s].key = key; t->e[s].b = b;
    t->n++;
    return 0;
}

static void talkers_clear(Talkers *t) {
    if (t->n) memset(t->e, 0xFF, t->cap * sizeof(TEntry));
    t->n = 0; t->has_free_key = 0; t->free_key_b = 0;
}

/* Sums of the usual small ifIndexes, without hashing. */
typedef struct { double b, p; } Sum;

static void put_entry(char **o, uint64_t key, double b, double p) {
    memcpy(*o, &key, 8); memcpy(*o + 8, &b, 8); memcpy(*o + 16, &p, 8);
    *o += 24;
}

/* Entries as bytes of (key uint64, bytes double, packets double) triples: the used ones of
 * ``small`` (keys are their indexes), then the table's in table order. */
static PyObject *entries_bytes(const Sum *small, const uint8_t *used, size_t n_small, const Table *t) {
    size_t n_used = 0;
    for (size_t i = 0; i < n_small; i++) n_used += used[i] != 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((t->n + n_used) * 3 * sizeof(uint64_t)));
    if (!out) return NULL;
    char *o = PyBytes_AS_STRING(out);
    for (size_t i = 0; i < n_small; i++)
        if (used[i]) put_entry(&o, i, small[i].b, small[i].p);
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].used) put_entry(&o, t->e[i].key, t->e[i].b, t->e[i].p);
    return out;
}

/* The talker table in the same triple form (packets 0), in table order, FREE_KEY last. */
static PyObject *talkers_bytes(const Talkers *t) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((t->n + t->has_free_key) * 3 * sizeof(uint64_t)));
    if (!out) return NULL;
    char *o = PyBytes_AS_STRING(out);
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].key != FREE_KEY) put_entry(&o, t->e[i].key, t->e[i].b, 0.0);
    if (t->has_free_key) put_entry(&o, FREE_KEY, t->free_key_b, 0.0);
    return out;
}

/* ---- the accumulator ------------------------------------------------------------------- */
#define SMALL_IF 256
#define TALKER_BATCH 32

typedef struct {
    PyObject_HEAD
    int32_t off[N_COLS], width[N_COLS];
    Py_ssize_t need;          /* bytes a record must have for every field read */
    uint64_t rate;            /* sampling rate of the batch (>= 1 where used) */
    int is6;
    uint32_t v4mask;
    uint64_t v6mask;
    uint32_t *bounds; Py_ssize_t m;            /* elementary IPv4 intervals */
    uint64_t *v6pfx; Py_ssize_t n_v6;          /* (agency, net_hi, net_lo, mask_hi, mask_lo) */
    Py_ssize_t n_agencies;
    /* Sums are float64, added record by record in arrival order: the arithmetic of the numpy
     * path's np.bincount(weights=float64), so both agree bit for bit where it matters (and
     * neither wraps around on absurd counters). */
    double *intervals;   /* m * 4: to bytes, to packets, from bytes, from packets */
    double *agencies6;   /* n_agencies * 4, same order */
    double *protos;      /* n_proto_keys * 2 */
    uint8_t *hit_to, *hit_from;
    Table in_if, out_if;
    Talkers talkers;
    Sum small_in[SMALL_IF], small_out[SMALL_IF];  /* the usual small ifindexes, without hashing */
    uint8_t used_in[SMALL_IF], used_out[SMALL_IF];
    /* Talker keys wait here, their table slots prefetched, and are added TALKER_BATCH at a time:
     * the talker table is the one large random-access structure, and its cache misses overlap
     * this way instead of stalling every record twice. */
    uint64_t tk_key[TALKER_BATCH];
    double tk_bytes[TALKER_BATCH];
    int tk_n;
    uint64_t max_in, max_out, n;
} Acc;

/* The fields of one record the aggregates need, already scaled by the sampling rate. */
typedef struct {
    double bytes, packets;
    uint32_t in_if, out_if;
    unsigned proto, sport, dport;
    uint64_t src, dst;              /* IPv4 addresses, or the high halves of IPv6 ones */
    uint64_t src_lo, dst_lo;        /* low halves of IPv6 addresses */
} Fields;

static inline uint64_t be(const uint8_t *p, int w) {
    /* memcpy + byte swap compiles to one load and one bswap for the usual widths */
    switch (w) {
    case 1: return p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }
    case 4: { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
    case 8: { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
    default: {
        uint64_t v = 0;
        for (int i = 0; i < w; i++) v = (v << 8) | p[i];
        return v;
    }
    }
}

static inline uint64_t col(const Acc *a, const uint8_t *rec, int c) {
    return a->width[c] ? be(rec + a->off[c], a->width[c]) : 0;
}

static void Acc_dealloc(Acc *a) {
    free(a->bounds); free(a->v6pfx); free(a->intervals); free(a->agencies6); free(a->protos);
    free(a->hit_to); free(a->hit_from);
    table_free(&a->in_if); table_free(&a->out_if); talkers_free(&a->talkers);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static void *copy_buffer(Py_buffer *view, Py_ssize_t item, Py_ssize_t *count) {
    *count = view->len / item;
    void *out = malloc(view->len ? (size_t)view->len : 1);
    if (out) memcpy(out, view->buf, (size_t)view->len);
    return out;
}

static int Acc_init(Acc *a, PyObject *args, PyObject *kwds) {
    Py_buffer layout, bounds, v6;
    unsigned long long rate, v6mask;
    unsigned long v4mask;
    int is6;
    Py_ssize_t n_agencies;
    static char *kw[] = {"layout", "rate", "is6", "v4mask", "v6mask", "bounds", "v6prefixes", "n_agencies", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*KpkKy*y*n", kw, &layout, &rate, &is6, &v4mask, &v6mask,
                                     &bounds, &v6, &n_agencies))
        return -1;
    int rc = -1;
    if (a->bounds) {
        PyErr_SetString(PyExc_RuntimeError, "Acc: already initialised");
        goto done;
    }
    if (layout.len != 2 * N_COLS * (Py_ssize_t)sizeof(int32_t) || bounds.len % 4 || v6.len % 40 || n_agencies < 0) {
        PyErr_SetString(PyExc_ValueError, "Acc: layout must be 2*N_COLS int32, bounds uint32, v6prefixes 5*uint64");
        goto done;
    }
    const int32_t *lay = layout.buf;
    a->need = 0;
    for (int c = 0; c < N_COLS; c++) {
        a->off[c] = lay[2 * c];
        a->width[c] = lay[2 * c + 1];
        if (a->off[c] < 0 || a->width[c] < 0 || a->width[c] > 8) {
            PyErr_Format(PyExc_ValueError, "Acc: column %d has offset %d width %d", c, a->off[c], a->width[c]);
            goto done;
        }
        if (a->width[c] && a->off[c] + a->width[c] > a->need) a->need = a->off[c] + a->width[c];
    }
    a->rate = rate; a->is6 = is6; a->v4mask = (uint32_t)v4mask; a->v6mask = v6mask;
    a->n_agencies = n_agencies;
    a->bounds = copy_buffer(&bounds, 4, &a->m);
    a->v6pfx = copy_buffer(&v6, 40, &a->n_v6);
    a->intervals = calloc((size_t)a->m * 4 + 1, sizeof(double));
    a->agencies6 = calloc((size_t)n_agencies * 4 + 1, sizeof(double));
    a->protos = calloc((size_t)n_proto_keys * 2 + 1, sizeof(double));
    a->hit_to = calloc((size_t)n_agencies + 1, 1);
    a->hit_from = calloc((size_t)n_agencies + 1, 1);
    if (!a->bounds || !a->v6pfx || !a->intervals || !a->agencies6 || !a->protos || !a->hit_to || !a->hit_from
        || table_init(&a->in_if, 64) < 0 || table_init(&a->out_if, 64) < 0 || talkers_init(&a->talkers, 1024) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < a->n_v6; i++) {
        if (a->v6pfx[5 * i] >= (uint64_t)n_agencies) {
            PyErr_SetString(PyExc_ValueError, "Acc: IPv6 prefix of an agency index out of range");
            goto done;
        }
    }
    if (a->m && a->bounds[0] != 0) {
        PyErr_SetString(PyExc_ValueError, "Acc: the first interval bound must be 0");
        goto done;
    }
    rc = 0;
done:
    PyBuffer_Release(&layout); PyBuffer_Release(&bounds); PyBuffer_Release(&v6);
    return rc;
}

/* index of the last bound <= addr (bounds[0] == 0, sorted); branch-free, because addresses
 * are as good as random to the branch predictor */
static inline Py_ssize_t interval_of(const Acc *a, uint32_t addr) {
    if (a->m <= 16) {
        Py_ssize_t i = 0;
        for (Py_ssize_t k = 1; k < a->m; k++) i += addr >= a->bounds[k];
        return i;
    }
    const uint32_t *base = a->bounds;
    Py_ssize_t n = a->m;
    while (n > 1) {  /* invariant: base[0] <= addr, the answer lies in base[0 .. n-1] */
        Py_ssize_t half = n / 2;
        base = (base[half] <= addr) ? base + half : base;
        n -= half;
    }
    return base - a->bounds;
}

static int talkers_flush(Acc *a) {
    for (int i = 0; i < a->tk_n; i++) {
        if (talkers_add(&a->talkers, a->tk_key[i], a->tk_bytes[i]) < 0) {
            a->tk_n = 0;
            return -1;
        }
    }
    a->tk_n = 0;
    return 0;
}

static inline int talker(Acc *a, uint64_t key, double bytes) {
    __builtin_prefetch(&a->talkers.e[slot_of(key, a->talkers.cap)]);
    a->tk_key[a->tk_n] = key;
    a->tk_bytes[a->tk_n] = bytes;
    if (++a->tk_n == TALKER_BATCH) return talkers_flush(a);
    return 0;
}

/* Scale counters by the record's own sampling interval (0: the batch's), else the batch's rate.
 * uint64 products wrap as the numpy path's do. */
static inline void scale(const Acc *a, uint64_t ibytes, uint64_t ipackets, int has_sampling, uint64_t r, Fields *f) {
    if (has_sampling) {
        if (r == 0) r = a->rate ? a->rate : 1;
        ibytes *= r; ipackets *= r;
    } else if (a->rate > 1) {
        ibytes *= a->rate; ipackets *= a->rate;
    }
    f->bytes = (double)ibytes; f->packets = (double)ipackets;
}

/* One record's fields through the template's layout table. */
static inline void read_layout(const Acc *a, const uint8_t *rec, Fields *f) {
    scale(a, col(a, rec, C_BYTES), col(a, rec, C_PACKETS), a->width[C_SAMPLING] != 0, col(a, rec, C_SAMPLING), f);
    f->in_if = (uint32_t)col(a, rec, C_IN_IF); f->out_if = (uint32_t)col(a, rec, C_OUT_IF);
    f->proto = (unsigned)(col(a, rec, C_PROTO) & 0xFF);
    f->sport = (unsigned)(col(a, rec, C_SPORT) & 0xFFFF); f->dport = (unsigned)(col(a, rec, C_DPORT) & 0xFFFF);
    if (!a->is6) {
        f->src = col(a, rec, C_SRC4); f->dst = col(a, rec, C_DST4);
        f->src_lo = f->dst_lo = 0;
    } else {
        f->src = col(a, rec, C_SRC6_HI); f->src_lo = col(a, rec, C_SRC6_LO);
        f->dst = col(a, rec, C_DST6_HI); f->dst_lo = col(a, rec, C_DST6_LO);
    }
}

/* A NetFlow v5 record (v5.py), at its fixed offsets: the compiler reads each field with one load. */
static inline void read_v5(const Acc *a, const uint8_t *rec, Fields *f) {
    scale(a, be(rec + 20, 4), be(rec + 16, 4), 0, 0, f);
    f->in_if = (uint32_t)be(rec + 12, 2); f->out_if = (uint32_t)be(rec + 14, 2);
    f->proto = rec[38];
    f->sport = (unsigned)be(rec + 32, 2); f->dport = (unsigned)be(rec + 34, 2);
    f->src = be(rec, 4); f->dst = be(rec + 4, 4);
    f->src_lo = f->dst_lo = 0;
}

static inline void add_if(Sum *small, uint8_t *used, uint32_t index, double b, double p) {
    small[index].b += b; small[index].p += p; used[index] = 1;
}

/* One record: the rules of decode.batch_from_records and aggregate.Aggregator.add. */
static inline __attribute__((always_inline)) int add_fields(Acc *a, const Fields *f) {
    double bytes = f->bytes, packets = f->packets;
    if (f->in_if > a->max_in) a->max_in = f->in_if;
    if (f->out_if > a->max_out) a->max_out = f->out_if;
    if (f->in_if < SMALL_IF) add_if(a->small_in, a->used_in, f->in_if, bytes, packets);
    else if (table_add(&a->in_if, f->in_if, bytes, packets) < 0) return -1;
    if (f->out_if < SMALL_IF) add_if(a->small_out, a->used_out, f->out_if, bytes, packets);
    else if (table_add(&a->out_if, f->out_if, bytes, packets) < 0) return -1;
    Py_ssize_t key = proto_base[f->proto];
    if (port_proto[f->proto]) {
        unsigned svc = svc_index[f->dport];
        if (svc == 0) svc = svc_index[f->sport];
        key += svc;
    }
    if (key >= 0 && key < n_proto_keys) { a->protos[2 * key] += bytes; a->protos[2 * key + 1] += packets; }
    if (!a->is6) {
        uint32_t src = (uint32_t)f->src, dst = (uint32_t)f->dst;
        if (a->n_agencies && a->m) {
            double *to = a->intervals + 4 * interval_of(a, dst), *from = a->intervals + 4 * interval_of(a, src);
            to[0] += bytes; to[1] += packets; from[2] += bytes; from[3] += packets;
        }
        if (talker(a, src & a->v4mask, bytes) < 0) return -1;
        return talker(a, dst & a->v4mask, bytes);
    }
    uint64_t shi = f->src, slo = f->src_lo, dhi = f->dst, dlo = f->dst_lo;
    if (a->n_v6) {
        memset(a->hit_to, 0, (size_t)a->n_agencies);
        memset(a->hit_from, 0, (size_t)a->n_agencies);
        for (Py_ssize_t i = 0; i < a->n_v6; i++) {
            const uint64_t *p = a->v6pfx + 5 * i;
            if ((dhi & p[3]) == p[1] && (dlo & p[4]) == p[2]) a->hit_to[p[0]] = 1;
            if ((shi & p[3]) == p[1] && (slo & p[4]) == p[2]) a->hit_from[p[0]] = 1;
        }
        for (Py_ssize_t g = 0; g < a->n_agencies; g++) {
            double *s = a->agencies6 + 4 * g;
            if (a->hit_to[g]) { s[0] += bytes; s[1] += packets; }
            if (a->hit_from[g]) { s[2] += bytes; s[3] += packets; }
        }
    }
    if (talker(a, shi & a->v6mask, bytes) < 0) return -1;
    return talker(a, dhi & a->v6mask, bytes);
}

static inline int add_record(Acc *a, const uint8_t *rec) {
    Fields f;
    read_layout(a, rec, &f);
    return add_fields(a, &f);
}

static PyObject *add_checked(Acc *a, Py_buffer *buf, const int64_t *starts, const int64_t *counts, Py_ssize_t runs,
                             int64_t first, int64_t stride, int64_t per, Py_ssize_t reclen) {
    /* Check every run against the buffer before reading anything (lengths are hostile). */
    if (reclen < a->need || reclen <= 0) {
        return PyErr_Format(PyExc_ValueError, "record length %zd shorter than the layout's %zd bytes", reclen,
                            a->need);
    }
    for (Py_ssize_t r = 0; r < runs; r++) {
        int64_t start = starts ? starts[r] : first + r * stride, count = counts ? counts[r] : per;
        if (start < 0 || count < 0 || count > (buf->len / reclen) || start > buf->len - count * reclen)
            return PyErr_Format(PyExc_ValueError, "run %zd: %lld records of %zd bytes at offset %lld leave the "
                                "%zd-byte buffer", r, (long long)count, reclen, (long long)start, buf->len);
    }
    const uint8_t *base = buf->buf;
    for (Py_ssize_t r = 0; r < runs; r++) {
        int64_t start = starts ? starts[r] : first + r * stride, count = counts ? counts[r] : per;
        const uint8_t *rec = base + start;
        for (int64_t i = 0; i < count; i++, rec += reclen) {
            if (add_record(a, rec) < 0) return PyErr_NoMemory();
        }
        a->n += (uint64_t)count;
    }
    if (talkers_flush(a) < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Acc_add_runs(Acc *a, PyObject *args) {
    Py_buffer buf, starts, counts;
    Py_ssize_t reclen;
    if (!PyArg_ParseTuple(args, "y*y*y*n", &buf, &starts, &counts, &reclen)) return NULL;
    PyObject *out;
    if (starts.len != counts.len || starts.len % 8) {
        out = PyErr_Format(PyExc_ValueError, "starts and counts must be int64 arrays of one length");
    } else {
        out = add_checked(a, &buf, starts.buf, counts.buf, starts.len / 8, 0, 0, 0, reclen);
    }
    PyBuffer_Release(&buf); PyBuffer_Release(&starts); PyBuffer_Release(&counts);
    return out;
}

static PyObject *Acc_add_grid(Acc *a, PyObject *args) {
    Py_buffer buf;
    long long first, stride, per;
    Py_ssize_t rows, reclen;
    if (!PyArg_ParseTuple(args, "y*LLnLn", &buf, &first, &stride, &rows, &per, &reclen)) return NULL;
    PyObject *out;
    if (rows < 0 || stride < 0 || first < 0 || (rows > 0 && first > buf.len)
        || (rows > 0 && stride > 0 && (rows > buf.len / stride + 1)))
        out = PyErr_Format(PyExc_ValueError, "grid of %zd rows with stride %lld", rows, stride);
    else
        out = add_checked(a, &buf, NULL, NULL, rows, first, stride, per, reclen);
    PyBuffer_Release(&buf);
    return out;
}

/* NetFlow v5 (v5.py): 24-byte header, count 1..30 records of 48 bytes, nothing else. */
#define V5_HEADER 24
#define V5_RECORD 48
#define V5_MAX 30

/* Given a batch, return the v5 sampling interval all its datagrams share (0 = none) when every
 * datagram is a well-formed v5 one, else -1; *records gets their record count. */
static long long v5_uniform(const Py_buffer *buf, Py_ssize_t slot, const int64_t *lengths, Py_ssize_t n,
                            long long *records) {
    long long interval = -1;
    *records = 0;
    if (n <= 0 || slot < V5_HEADER || slot > (1 << 20)) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t len = lengths[i];
        if (len < V5_HEADER || len > slot || i > buf->len / slot || i * slot > buf->len - len) return -1;
        const uint8_t *d = (const uint8_t *)buf->buf + i * slot;
        unsigned version = be(d, 2), count = be(d + 2, 2), sampling = be(d + 22, 2) & 0x3FFF;
        if (version != 5 || count == 0 || count > V5_MAX || len != V5_HEADER + (int64_t)count * V5_RECORD) return -1;
        if (interval >= 0 && sampling != interval) return -1;
        interval = sampling;
        *records += count;
    }
    return interval;
}

static PyObject *v5_batch(PyObject *self, PyObject *args) {
    Py_buffer buf, lengths;
    Py_ssize_t slot;
    if (!PyArg_ParseTuple(args, "y*ny*", &buf, &slot, &lengths)) return NULL;
    long long records;
    long long interval = v5_uniform(&buf, slot, lengths.buf, lengths.len / 8, &records);
    PyBuffer_Release(&buf); PyBuffer_Release(&lengths);
    if (interval < 0) Py_RETURN_NONE;
    return Py_BuildValue("(LL)", records, interval);
}

/* The export-sequence check of sequence.py for the usual batch: every datagram of one source (same
 * domain), each sequence number the previous one plus its increment (mode 0: 1, v9; mode 1: the
 * v5 record count at offset 2; mode 2: incs[i], IPFIX data records, -1 unknown), the first one
 * equal to expected. If so, push every (sequence, export seconds) into the ring (int64: RING
 * sequence numbers, then RING seconds; `filled` of them in use, oldest first) and return
 * (next expected, last export seconds, last uptime ms, largest export seconds, filled); else None,
 * the ring untouched. */
static PyObject *seq_run(PyObject *self, PyObject *args) {
    Py_buffer buf, ring, incs = {0};
    Py_ssize_t slot, n, seq_at, secs_at, dom_at, dom_w, filled;
    int mode;
    unsigned long long domain, expected;
    PyObject *incs_obj, *out = NULL;
    if (!PyArg_ParseTuple(args, "y*nnnnnniKKw*nO", &buf, &slot, &n, &seq_at, &secs_at, &dom_at, &dom_w, &mode,
                          &domain, &expected, &ring, &filled, &incs_obj)) return NULL;
    Py_ssize_t R = ring.len / 16, end = seq_at > secs_at ? seq_at + 4 : secs_at + 4;
    if (dom_at + dom_w > end) end = dom_at + dom_w;
    if (end < 8) end = 8;
    if (mode == 2 && PyObject_GetBuffer(incs_obj, &incs, PyBUF_SIMPLE) < 0) goto done;
    if (n <= 0 || slot <= 0 || R <= 0 || filled < 0 || filled > R || (dom_w != 2 && dom_w != 4) || seq_at < 0 ||
        secs_at < 0 || dom_at < 0 || mode < 0 || mode > 2 || (mode == 2 && incs.len < n * 8) ||
        n > (buf.len - end) / slot + 1 || buf.len < end) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    const uint8_t *base = buf.buf;
    const int64_t *inc = incs.buf;
    uint32_t want = (uint32_t)expected;
    uint64_t newest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *d = base + i * slot;
        uint32_t s = (uint32_t)be(d + seq_at, 4);
        if (be(d + dom_at, (int)dom_w) != domain || s != want || (mode == 2 && inc[i] < 0)) {
            out = Py_NewRef(Py_None);
            goto done;
        }
        want = s + (uint32_t)(mode == 0 ? 1 : mode == 1 ? be(d + 2, 2) : (uint64_t)inc[i]);
        uint64_t t = be(d + secs_at, 4);
        if (t > newest) newest = t;
    }
    int64_t *seqs = ring.buf, *secs = seqs + R;
    Py_ssize_t take = n < R ? n : R, keep = filled + take > R ? R - take : filled;
    memmove(seqs, seqs + filled - keep, keep * 8);
    memmove(secs, secs + filled - keep, keep * 8);
    for (Py_ssize_t j = 0; j < take; j++) {
        const uint8_t *d = base + (n - take + j) * slot;
        seqs[keep + j] = (int64_t)be(d + seq_at, 4);
        secs[keep + j] = (int64_t)be(d + secs_at, 4);
    }
    const uint8_t *last = base + (n - 1) * slot;
    out = Py_BuildValue("(KKKKn)", (unsigned long long)want, (unsigned long long)be(last + secs_at, 4),
                        (unsigned long long)be(last + 4, 4), (unsigned long long)newest, keep + take);
done:
    PyBuffer_Release(&buf); PyBuffer_Release(&ring);
    if (incs.obj) PyBuffer_Release(&incs);
    return out;
}

static PyObject *Acc_add_v5(Acc *a, PyObject *args) {
    Py_buffer buf, lengths;
    Py_ssize_t slot;
    if (!PyArg_ParseTuple(args, "y*ny*", &buf, &slot, &lengths)) return NULL;
    long long records;
    PyObject *out = NULL;
    if (v5_uniform(&buf, slot, lengths.buf, lengths.len / 8, &records) < 0) {  /* checked again: never trust */
        PyErr_SetString(PyExc_ValueError, "add_v5: not a batch of well-formed v5 datagrams of one sampling interval");
    } else if (V5_RECORD < a->need) {
        PyErr_SetString(PyExc_ValueError, "add_v5: layout longer than a v5 record");
    } else {
        const int64_t *len = lengths.buf;
        for (Py_ssize_t i = 0; i < lengths.len / 8; i++) {
            const uint8_t *rec = (const uint8_t *)buf.buf + i * slot + V5_HEADER;
            int64_t count = (len[i] - V5_HEADER) / V5_RECORD;
            for (int64_t r = 0; r < count; r++, rec += V5_RECORD) {
                Fields f;
                read_v5(a, rec, &f);
                if (add_fields(a, &f) < 0) {
                    PyErr_NoMemory();
                    goto done;
                }
            }
            a->n += (uint64_t)count;
        }
        if (talkers_flush(a) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        out = Py_BuildValue("L", records);
    }
done:
    PyBuffer_Release(&buf); PyBuffer_Release(&lengths);
    return out;
}

/* ---- the header read and set walk of a whole batch (batch.read_headers + batch.walk_sets) ---- */
enum { V_5, V_9, V_IPFIX, V_OTHER, V_NONE };
/* 1 + index into records.REASONS; 0 = no defect */
enum { RS_OK, RS_TRUNCATED_HEADER, RS_UNSUPPORTED_VERSION, RS_LENGTH_MISMATCH, RS_BAD_SET };
#define V9_HEADER 20
#define IPFIX_HEADER 16
#define HEAD_COLS 5   /* vcode, count, domain, sampling, reason */
#define SET_COLS 7    /* dg, set id, body start, body stop, version (9/10), special, dup */
#define MAX_SOURCES 16

static inline int is_special(int version, unsigned set_id) {
    return version == 9 ? set_id <= 1 : (set_id == 2 || set_id == 3);
}

/* The previous datagram's run of template/options sets per source, for the dup flag. */
typedef struct { int64_t exp, version, domain; Py_ssize_t first, n; } Source;

/* Given the sets [a, a+n) and [b, b+n) of the output (same count), return whether their ids and
 * bodies are equal byte for byte. */
static int same_sets(const uint8_t *base, const int64_t *col_id, const int64_t *col_start, const int64_t *col_stop,
                     Py_ssize_t a, Py_ssize_t b, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t la = col_stop[a + i] - col_start[a + i], lb = col_stop[b + i] - col_start[b + i];
        if (col_id[a + i] != col_id[b + i] || la != lb || memcmp(base + col_start[a + i], base + col_start[b + i], la))
            return 0;
    }
    return 1;
}

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer buf, lengths_buf, exporters_buf;
    Py_ssize_t slot;
    if (!PyArg_ParseTuple(args, "y*ny*y*", &buf, &slot, &lengths_buf, &exporters_buf)) return NULL;
    PyObject *heads = NULL, *sets = NULL, *out = NULL;
    int64_t *tmp = NULL;
    Py_ssize_t n = lengths_buf.len / 8;
    const int64_t *lengths = lengths_buf.buf, *exporter = exporters_buf.buf;
    if (lengths_buf.len % 8 || exporters_buf.len != lengths_buf.len || slot < 24 || n > buf.len / slot) {
        PyErr_SetString(PyExc_ValueError, "walk: lengths and exporter indexes must be int64 of one length, "
                        "slot >= 24, n * slot within the buffer");
        goto done;
    }
    const uint8_t *base = buf.buf;
    Py_ssize_t max_sets = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (lengths[i] < 0 || lengths[i] > slot) {
            PyErr_Format(PyExc_ValueError, "walk: datagram %zd of %lld bytes does not fit its %zd-byte slot", i,
                         (long long)lengths[i], slot);
            goto done;
        }
        max_sets += lengths[i] / 4;
    }
    heads = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(HEAD_COLS * n * 8));
    tmp = malloc((size_t)(max_sets ? max_sets : 1) * SET_COLS * 8);
    if (!heads || !tmp) { PyErr_NoMemory(); goto done; }
    int64_t *h = (int64_t *)PyByteArray_AS_STRING(heads);
    int64_t *vcode = h, *count = h + n, *domain = h + 2 * n, *sampling = h + 3 * n, *reason = h + 4 * n;
    /* columns of the set table, max_sets apart while filling */
    int64_t *s_dg = tmp, *s_id = tmp + max_sets, *s_start = tmp + 2 * max_sets, *s_stop = tmp + 3 * max_sets,
            *s_ver = tmp + 4 * max_sets, *s_special = tmp + 5 * max_sets, *s_dup = tmp + 6 * max_sets;
    Source sources[MAX_SOURCES];
    int n_sources = 0;
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *d = base + i * slot;
        int64_t len = lengths[i];
        unsigned version = be(d, 2);
        count[i] = be(d + 2, 2);
        sampling[i] = be(d + 22, 2);
        int v = version == 5 ? V_5 : version == 9 ? V_9 : version == 10 ? V_IPFIX : V_OTHER;
        if (len < 2) v = V_NONE;
        vcode[i] = v;
        domain[i] = v == V_9 ? be(d + 16, 4) : be(d + 12, 4);
        int r = RS_OK;
        if (v == V_OTHER) r = RS_UNSUPPORTED_VERSION;
        if (v == V_5 && (count[i] == 0 || count[i] > V5_MAX || len != V5_HEADER + count[i] * V5_RECORD))
            r = RS_LENGTH_MISMATCH;
        if (v == V_IPFIX && count[i] != len) r = RS_LENGTH_MISMATCH;
        if (len < 2 || (v == V_5 && len < V5_HEADER) || (v == V_9 && len < V9_HEADER)
            || (v == V_IPFIX && len < IPFIX_HEADER))
            r = RS_TRUNCATED_HEADER;
        reason[i] = r;
        if (r != RS_OK || (v != V_9 && v != V_IPFIX)) continue;
        int ver = v == V_9 ? 9 : 10;
        int64_t pos = i * slot + (v == V_9 ? V9_HEADER : IPFIX_HEADER), end = i * slot + len;
        Py_ssize_t first_special = -1, n_special = 0;
        while (end - pos >= 4) {
            unsigned set_id = be(base + pos, 2);
            int64_t set_len = be(base + pos + 2, 2);
            if (set_len < 4 || pos + set_len > end) { reason[i] = RS_BAD_SET; break; }
            int special = is_special(ver, set_id);
            s_dg[m] = i; s_id[m] = set_id; s_start[m] = pos + 4; s_stop[m] = pos + set_len;
            s_ver[m] = ver; s_special[m] = special; s_dup[m] = 0;
            if (special) {
                if (first_special < 0) first_special = m;
                n_special++;
            }
            m++;
            pos += set_len;
        }
        if (n_special == 0) continue;
        /* dup: this datagram's template/options sets equal, id for id and byte for byte, those of the
         * previous datagram of the same source that had any (exporters resend them every few datagrams). */
        Source *src = NULL;
        for (int k = 0; k < n_sources; k++)
            if (sources[k].exp == exporter[i] && sources[k].version == ver && sources[k].domain == domain[i]) src = &sources[k];
        if (src == NULL && n_sources < MAX_SOURCES) {
            src = &sources[n_sources++];
            src->exp = exporter[i]; src->version = ver; src->domain = domain[i]; src->n = 0;
        }
        if (src == NULL) continue;  /* too many sources in one batch: no dup flags, every set is parsed */
        /* the specials of a datagram are not contiguous in the output when data sets lie between them */
        Py_ssize_t idx[64], nidx = 0;
        for (Py_ssize_t k = first_special; k < m && nidx < 64; k++) if (s_special[k]) idx[nidx++] = k;
        int dup = 0;
        if (nidx == n_special && src->n == n_special) {
            dup = 1;
            Py_ssize_t prev = src->first, seen = 0;
            for (Py_ssize_t k = prev; seen < n_special && dup; k++) {
                if (!s_special[k]) continue;
                if (!same_sets(base, s_id, s_start, s_stop, k, idx[seen], 1)) dup = 0;
                seen++;
            }
        }
        if (dup) for (Py_ssize_t k = 0; k < nidx; k++) s_dup[idx[k]] = 1;
        src->first = first_special;
        src->n = nidx == n_special ? n_special : -1;  /* over 64 specials: never a dup base */
    }
    sets = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(SET_COLS * m * 8));
    if (!sets) goto done;
    int64_t *o = (int64_t *)PyByteArray_AS_STRING(sets);
    for (int c = 0; c < SET_COLS; c++) memcpy(o + c * m, tmp + c * max_sets, (size_t)m * 8);
    out = Py_BuildValue("(OOn)", heads, sets, m);
done:
    free(tmp);
    Py_XDECREF(heads); Py_XDECREF(sets);
    PyBuffer_Release(&buf); PyBuffer_Release(&lengths_buf); PyBuffer_Release(&exporters_buf);
    return out;
}

/* ---- the receive call (receive.BatchReceiver) ------------------------------------------------ */
#ifdef __linux__
/* recv(fd, buf, slot, slots, overflow, spill, scratch): up to ``slots`` datagrams in one recvmmsg,
 * datagram i into buf[i*slot:] with its rest (past ``slot`` bytes, up to 64 KiB) in
 * overflow[i*spill:]. ``scratch`` (RECV_SCRATCH bytes per slot) holds the message headers, filled
 * here on each call so Python keeps no pointers. Return None when nothing waits, else (lengths,
 * exporter index, distinct exporter address keys, longest length): int64 bytes, int64 bytes, list
 * of bytes (4 or 16 long). */
typedef struct { struct iovec iov[2]; struct sockaddr_in6 name; } Slot;
#define RECV_SCRATCH (sizeof(struct mmsghdr) + sizeof(Slot))

static PyObject *recv_batch(PyObject *self, PyObject *args) {
    int fd;
    Py_ssize_t slot, slots, spill;
    Py_buffer buf, overflow, scratch;
    if (!PyArg_ParseTuple(args, "iw*nnw*nw*", &fd, &buf, &slot, &slots, &overflow, &spill, &scratch)) return NULL;
    PyObject *out = NULL, *lengths = NULL, *index = NULL, *keys = NULL;
    if (slot <= 0 || slots <= 0 || spill < 0 || buf.len / slot < slots || (spill && overflow.len / spill < slots)
        || scratch.len / (Py_ssize_t)RECV_SCRATCH < slots || slots > (1 << 16)) {
        PyErr_SetString(PyExc_ValueError, "recv: buffers smaller than slots * (slot, spill, header)");
        goto done;
    }
    struct mmsghdr *msgs = scratch.buf;
    Slot *sl = (Slot *)(msgs + slots);  /* mmsghdr is 8-byte aligned in size, so Slot is too */
    for (Py_ssize_t i = 0; i < slots; i++) {
        sl[i].iov[0].iov_base = (char *)buf.buf + i * slot; sl[i].iov[0].iov_len = (size_t)slot;
        sl[i].iov[1].iov_base = spill ? (char *)overflow.buf + i * spill : NULL; sl[i].iov[1].iov_len = (size_t)spill;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_name = &sl[i].name; msgs[i].msg_hdr.msg_namelen = sizeof(sl[i].name);
        msgs[i].msg_hdr.msg_iov = sl[i].iov; msgs[i].msg_hdr.msg_iovlen = spill ? 2 : 1;
    }
    /* non-blocking and short: the GIL stays held */
    int n = recvmmsg(fd, msgs, (unsigned)slots, MSG_DONTWAIT, NULL);
    if (n <= 0) {
        int err = errno;
        if (n == 0 || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) out = Py_NewRef(Py_None);
        else { errno = err; PyErr_SetFromErrno(PyExc_OSError); }
        goto done;
    }
    lengths = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * 8);
    index = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * 8);
    keys = PyList_New(0);
    if (!lengths || !index || !keys) goto done;
    int64_t *len = (int64_t *)PyBytes_AS_STRING(lengths), *idx = (int64_t *)PyBytes_AS_STRING(index);
    int64_t longest = 0;
    /* exporters of this batch: usually one, so a linear search; at most n distinct */
    const uint8_t *seen[64];
    int seen_len[64], n_seen = 0;
    for (int i = 0; i < n; i++) {
        len[i] = msgs[i].msg_len;
        if (len[i] > longest) longest = len[i];
        const struct sockaddr *sa = (const struct sockaddr *)&sl[i].name;
        const uint8_t *key;
        int key_len;
        if (sa->sa_family == AF_INET) { key = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr; key_len = 4; }
        else { key = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr; key_len = 16; }
        int found = -1;
        for (int k = 0; k < n_seen && k < 64; k++)
            if (seen_len[k] == key_len && !memcmp(seen[k], key, (size_t)key_len)) { found = k; break; }
        if (found < 0) {
            Py_ssize_t total = PyList_GET_SIZE(keys);
            for (Py_ssize_t k = 64; k < total && found < 0; k++) {  /* beyond 64 exporters: compare the list */
                PyObject *b = PyList_GET_ITEM(keys, k);
                if (PyBytes_GET_SIZE(b) == key_len && !memcmp(PyBytes_AS_STRING(b), key, (size_t)key_len)) found = (int)k;
            }
        }
        if (found < 0) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)key, key_len);
            if (!b || PyList_Append(keys, b) < 0) { Py_XDECREF(b); goto done; }
            Py_DECREF(b);
            found = (int)PyList_GET_SIZE(keys) - 1;
            if (n_seen < 64) { seen[n_seen] = key; seen_len[n_seen] = key_len; n_seen++; }
        }
        idx[i] = found;
    }
    out = Py_BuildValue("(OOOL)", lengths, index, keys, (long long)longest);
done:
    Py_XDECREF(lengths); Py_XDECREF(index); Py_XDECREF(keys);
    PyBuffer_Release(&buf); PyBuffer_Release(&overflow); PyBuffer_Release(&scratch);
    return out;
}
#endif

static PyObject *f64_bytes(const double *v, Py_ssize_t n) {
    return PyBytes_FromStringAndSize((const char *)v, n * (Py_ssize_t)sizeof(double));
}

/* Return (records, in_if, max_in, out_if, max_out, intervals, agencies6, protocols, talkers) and reset. */
static PyObject *Acc_take(Acc *a, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = Py_BuildValue("(KNKNKNNNN)", (unsigned long long)a->n, entries_bytes(a->small_in, a->used_in, SMALL_IF, &a->in_if),
                                  (unsigned long long)a->max_in, entries_bytes(a->small_out, a->used_out, SMALL_IF, &a->out_if),
                                  (unsigned long long)a->max_out, f64_bytes(a->intervals, a->m * 4),
                                  f64_bytes(a->agencies6, a->n_agencies * 4), f64_bytes(a->protos, n_proto_keys * 2),
                                  talkers_bytes(&a->talkers));
    if (!out) return NULL;
    table_clear(&a->in_if); table_clear(&a->out_if); talkers_clear(&a->talkers);
    memset(a->small_in, 0, sizeof(a->small_in)); memset(a->used_in, 0, sizeof(a->used_in));
    memset(a->small_out, 0, sizeof(a->small_out)); memset(a->used_out, 0, sizeof(a->used_out));
    memset(a->intervals, 0, (size_t)a->m * 4 * sizeof(double));
    memset(a->agencies6, 0, (size_t)a->n_agencies * 4 * sizeof(double));
    memset(a->protos, 0, (size_t)n_proto_keys * 2 * sizeof(double));
    a->n = a->max_in = a->max_out = 0;
    return out;
}

static PyMethodDef Acc_methods[] = {
    {"add_runs", (PyCFunction)Acc_add_runs, METH_VARARGS,
     "add_runs(buf, starts, counts, record_len): add runs of records (int64 starts and counts)."},
    {"add_grid", (PyCFunction)Acc_add_grid, METH_VARARGS,
     "add_grid(buf, first, stride, rows, per_row, record_len): add rows of per_row records."},
    {"add_v5", (PyCFunction)Acc_add_v5, METH_VARARGS,
     "add_v5(buf, slot, lengths): add every record of a batch that v5_batch() accepted; return the count."},
    {"take", (PyCFunction)Acc_take, METH_NOARGS, "take(): return the sums since the last take and reset."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AccType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "citydc.collectors.netflow._fastflow.Acc",
    .tp_basicsize = sizeof(Acc),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Accumulate NetFlow records of one template straight into aggregate sums.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Acc_init,
    .tp_dealloc = (destructor)Acc_dealloc,
    .tp_methods = Acc_methods,
};

static PyObject *set_tables(PyObject *self, PyObject *args) {
    Py_buffer pb, pp, svc;
    Py_ssize_t keys;
    if (!PyArg_ParseTuple(args, "y*y*y*n", &pb, &pp, &svc, &keys)) return NULL;
    PyObject *out = NULL;
    if (pb.len != sizeof(proto_base) || pp.len != sizeof(port_proto) || svc.len != sizeof(svc_index) || keys < 0) {
        PyErr_SetString(PyExc_ValueError, "set_tables: int16[256], uint8[256], uint8[65536], key count");
    } else {
        memcpy(proto_base, pb.buf, sizeof(proto_base));
        memcpy(port_proto, pp.buf, sizeof(port_proto));
        memcpy(svc_index, svc.buf, sizeof(svc_index));
        n_proto_keys = keys;
        out = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&pb); PyBuffer_Release(&pp); PyBuffer_Release(&svc);
    return out;
}

static PyMethodDef module_methods[] = {
    {"v5_batch", v5_batch, METH_VARARGS,
     "v5_batch(buf, slot, lengths): (records, sampling interval) if every datagram is a well-formed v5 one "
     "with one sampling interval, else None."},
    {"seq_run", seq_run, METH_VARARGS,
     "seq_run(buf, slot, n, seq_at, secs_at, domain_at, domain_width, mode, domain, expected, ring, filled, incs): "
     "(next expected, last secs, last uptime, newest secs, filled) if the batch is one source's datagrams in order "
     "(the ring then holds their sequence numbers and seconds), else None."},
    {"walk", walk, METH_VARARGS,
     "walk(buf, slot, lengths, exporter_index): (heads, sets, n_sets) as int64 column blocks: the header facts of "
     "every datagram (vcode, count, domain, sampling, reason) and every v9/IPFIX set (dg, id, start, stop, "
     "version, special, dup), as batch.read_headers and batch.walk_sets find them."},
#ifdef __linux__
    {"recv", recv_batch, METH_VARARGS,
     "recv(fd, buf, slot, slots, overflow, spill, scratch): one recvmmsg of up to slots datagrams; None when "
     "nothing waits, else (lengths int64, exporter index int64, exporter address keys, longest length)."},
#endif
    {"set_tables", set_tables, METH_VARARGS, "set_tables(proto_base, port_proto, svc_index, n_keys)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastflow", "Compiled NetFlow decode+aggregate pass.",
                                    -1, module_methods};

PyMODINIT_FUNC PyInit__fastflow(void) {
    if (PyType_Ready(&AccType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Acc", (PyObject *)&AccType) < 0) { Py_DECREF(m); return NULL; }
    PyModule_AddIntConstant(m, "N_COLS", N_COLS);
#ifdef __linux__
    PyModule_AddIntConstant(m, "RECV_SCRATCH", (long)RECV_SCRATCH);
#endif
    return m;
}
