/* Compiled fast path of the NetFlow collector: decode records and aggregate them in one pass.
 *
 * Python (fastpath.py) compiles each template once into a table of (offset, width) per column
 * and hands over runs of records (start offset, record count) inside a receive buffer. An Acc
 * reads every record's fields big-endian straight from the buffer and adds its bytes and
 * packets to the same aggregates aggregate.Aggregator keeps: per interface and direction, per
 * elementary agency interval (IPv4) or agency (IPv6), per protocol/service, per talker key.
 * take() hands the sums back as bytes of native uint64 for numpy, and resets.
 *
 * Hostile input: every run is checked against the buffer before any byte is read, and the
 * layout against the record length, so no read can leave the buffer. Plain C99 and the
 * Python C API (buffer protocol only); no numpy headers, so it builds with any numpy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { C_BYTES, C_PACKETS, C_SAMPLING, C_SRC4, C_DST4, C_SRC6_HI, C_SRC6_LO, C_DST6_HI, C_DST6_LO,
       C_PROTO, C_SPORT, C_DPORT, C_IN_IF, C_OUT_IF, N_COLS };

/* protocol/service tables of aggregate.py, set once by set_tables() */
static int16_t proto_base[256];
static uint8_t port_proto[256];
static uint8_t svc_index[65536];
static Py_ssize_t n_proto_keys = 0;

/* ---- a small open-addressing hash table: uint64 key -> (bytes, packets) ---------------- */
/* Entries interleaved, so a lookup touches one cache line. */
typedef struct { uint64_t key, b, p, used; } Entry;
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

static inline size_t slot_of(uint64_t key, size_t cap) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
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
static inline int table_add(Table *t, uint64_t key, uint64_t b, uint64_t p) {
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

/* Entries as bytes of (key, bytes, packets) uint64 triples, in table order. */
static PyObject *table_bytes(const Table *t) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(t->n * 3 * sizeof(uint64_t)));
    if (!out) return NULL;
    uint64_t *o = (uint64_t *)PyBytes_AS_STRING(out);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->e[i].used) continue;
        *o++ = t->e[i].key; *o++ = t->e[i].b; *o++ = t->e[i].p;
    }
    return out;
}

/* ---- the accumulator ------------------------------------------------------------------- */
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
    uint64_t *intervals;   /* m * 4: to bytes, to packets, from bytes, from packets */
    uint64_t *agencies6;   /* n_agencies * 4, same order */
    uint64_t *protos;      /* n_proto_keys * 2 */
    uint8_t *hit_to, *hit_from;
    Table in_if, out_if, talkers;
    uint64_t max_in, max_out, n;
} Acc;

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
    table_free(&a->in_if); table_free(&a->out_if); table_free(&a->talkers);
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
    a->intervals = calloc((size_t)a->m * 4 + 1, sizeof(uint64_t));
    a->agencies6 = calloc((size_t)n_agencies * 4 + 1, sizeof(uint64_t));
    a->protos = calloc((size_t)n_proto_keys * 2 + 1, sizeof(uint64_t));
    a->hit_to = calloc((size_t)n_agencies + 1, 1);
    a->hit_from = calloc((size_t)n_agencies + 1, 1);
    if (!a->bounds || !a->v6pfx || !a->intervals || !a->agencies6 || !a->protos || !a->hit_to || !a->hit_from
        || table_init(&a->in_if, 64) < 0 || table_init(&a->out_if, 64) < 0 || table_init(&a->talkers, 1024) < 0) {
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

/* index of the last bound <= addr (bounds[0] == 0, sorted) */
static inline Py_ssize_t interval_of(const Acc *a, uint32_t addr) {
    Py_ssize_t lo = 0, hi = a->m;  /* invariant: bounds[lo] <= addr, bounds[hi] > addr (or hi == m) */
    while (hi - lo > 1) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a->bounds[mid] <= addr) lo = mid; else hi = mid;
    }
    return lo;
}

/* One record: the rules of decode.batch_from_records and aggregate.Aggregator.add. */
static inline int add_record(Acc *a, const uint8_t *rec) {
    uint64_t bytes = col(a, rec, C_BYTES), packets = col(a, rec, C_PACKETS);
    if (a->width[C_SAMPLING]) {
        uint64_t r = be(rec + a->off[C_SAMPLING], a->width[C_SAMPLING]);
        if (r == 0) r = a->rate ? a->rate : 1;
        bytes *= r; packets *= r;
    } else if (a->rate > 1) {
        bytes *= a->rate; packets *= a->rate;
    }
    uint32_t in_if = (uint32_t)col(a, rec, C_IN_IF), out_if = (uint32_t)col(a, rec, C_OUT_IF);
    if (in_if > a->max_in) a->max_in = in_if;
    if (out_if > a->max_out) a->max_out = out_if;
    if (table_add(&a->in_if, in_if, bytes, packets) < 0 || table_add(&a->out_if, out_if, bytes, packets) < 0)
        return -1;
    unsigned proto = (unsigned)(col(a, rec, C_PROTO) & 0xFF);
    Py_ssize_t key = proto_base[proto];
    if (port_proto[proto]) {
        unsigned svc = svc_index[col(a, rec, C_DPORT) & 0xFFFF];
        if (svc == 0) svc = svc_index[col(a, rec, C_SPORT) & 0xFFFF];
        key += svc;
    }
    if (key >= 0 && key < n_proto_keys) { a->protos[2 * key] += bytes; a->protos[2 * key + 1] += packets; }
    if (!a->is6) {
        uint32_t src = (uint32_t)col(a, rec, C_SRC4), dst = (uint32_t)col(a, rec, C_DST4);
        if (a->n_agencies && a->m) {
            uint64_t *to = a->intervals + 4 * interval_of(a, dst), *from = a->intervals + 4 * interval_of(a, src);
            to[0] += bytes; to[1] += packets; from[2] += bytes; from[3] += packets;
        }
        if (table_add(&a->talkers, src & a->v4mask, bytes, 0) < 0) return -1;
        return table_add(&a->talkers, dst & a->v4mask, bytes, 0);
    }
    uint64_t shi = col(a, rec, C_SRC6_HI), slo = col(a, rec, C_SRC6_LO);
    uint64_t dhi = col(a, rec, C_DST6_HI), dlo = col(a, rec, C_DST6_LO);
    if (a->n_v6) {
        memset(a->hit_to, 0, (size_t)a->n_agencies);
        memset(a->hit_from, 0, (size_t)a->n_agencies);
        for (Py_ssize_t i = 0; i < a->n_v6; i++) {
            const uint64_t *p = a->v6pfx + 5 * i;
            if ((dhi & p[3]) == p[1] && (dlo & p[4]) == p[2]) a->hit_to[p[0]] = 1;
            if ((shi & p[3]) == p[1] && (slo & p[4]) == p[2]) a->hit_from[p[0]] = 1;
        }
        for (Py_ssize_t g = 0; g < a->n_agencies; g++) {
            uint64_t *s = a->agencies6 + 4 * g;
            if (a->hit_to[g]) { s[0] += bytes; s[1] += packets; }
            if (a->hit_from[g]) { s[2] += bytes; s[3] += packets; }
        }
    }
    if (table_add(&a->talkers, shi & a->v6mask, bytes, 0) < 0) return -1;
    return table_add(&a->talkers, dhi & a->v6mask, bytes, 0);
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

static PyObject *u64_bytes(const uint64_t *v, Py_ssize_t n) {
    return PyBytes_FromStringAndSize((const char *)v, n * (Py_ssize_t)sizeof(uint64_t));
}

/* Return (records, in_if, max_in, out_if, max_out, intervals, agencies6, protocols, talkers) and reset. */
static PyObject *Acc_take(Acc *a, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = Py_BuildValue("(KNKNKNNNN)", (unsigned long long)a->n, table_bytes(&a->in_if),
                                  (unsigned long long)a->max_in, table_bytes(&a->out_if),
                                  (unsigned long long)a->max_out, u64_bytes(a->intervals, a->m * 4),
                                  u64_bytes(a->agencies6, a->n_agencies * 4), u64_bytes(a->protos, n_proto_keys * 2),
                                  table_bytes(&a->talkers));
    if (!out) return NULL;
    table_clear(&a->in_if); table_clear(&a->out_if); table_clear(&a->talkers);
    memset(a->intervals, 0, (size_t)a->m * 4 * sizeof(uint64_t));
    memset(a->agencies6, 0, (size_t)a->n_agencies * 4 * sizeof(uint64_t));
    memset(a->protos, 0, (size_t)n_proto_keys * 2 * sizeof(uint64_t));
    a->n = a->max_in = a->max_out = 0;
    return out;
}

static PyMethodDef Acc_methods[] = {
    {"add_runs", (PyCFunction)Acc_add_runs, METH_VARARGS,
     "add_runs(buf, starts, counts, record_len): add runs of records (int64 starts and counts)."},
    {"add_grid", (PyCFunction)Acc_add_grid, METH_VARARGS,
     "add_grid(buf, first, stride, rows, per_row, record_len): add rows of per_row records."},
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
    return m;
}
