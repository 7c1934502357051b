/* An exposure's event id, timestamp and jsonPayload in one call: gateway/exposure_json.py.
 *
 * The Python encoder (``ExposureEncoder`` in gateway/exposure_json.py) is the reference; this
 * module makes the same bytes with one C call instead of a dozen Python-level ones (each costs
 * hundreds of instructions on CPython 3.11; docs/benchmarks.md, "Exposure logging, third
 * pass"). tests/gateway/test_exposure_json.py holds the two equal, byte for byte, for every
 * record shape and for hypothesis-generated strings.
 *
 * Strings are escaped as orjson escapes them: '"' and '\\' and the control characters below
 * 0x20 (\b \t \n \f \r, the others as \u00xx), everything else as UTF-8. A string that has no
 * UTF-8 form (a lone surrogate) or an item that is not a dict with a str "id" makes ``encode``
 * return None: the caller then uses the Python encoder, which raises as orjson does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define ID_PREFIX 20 /* hex digits drawn once per encoder (gateway/ids.py) */
#define STACK_BUF 4096

typedef struct {
    PyObject_HEAD
    PyTypeObject *record_type; /* EncodedExposure: a tuple subclass (event_id, ts, payload) */
    PyObject *template_fn;     /* (route, model, phase) -> 5 constant parts (bytes), count key */
    PyObject *counts;          /* dict: count key -> exposures encoded (Metrics.exposure_counts) */
    PyObject *dumps;           /* orjson.dumps, for the attributes */
    PyObject *fallback;        /* the Python encoder, for what this one cannot write */
    PyObject *fallback_log;    /* the Python encoder's log, likewise */
    PyObject *admit;           /* where log() sends records (LogFanOut.admit) */
    PyObject *templates;       /* dict: mixed pointers -> (route, model, phase, parts) */
    Py_ssize_t max_templates;
    char prefix[ID_PREFIX];
    uint64_t counter;
    int64_t second;  /* the second ``date`` holds, -1 before the first call */
    char date[32];   /* "YYYY-MM-DDTHH:MM:SS." (20 characters) and strftime's NUL */
} Encoder;

static PyObject *id_key; /* "id" */

static const char HEX[] = "0123456789abcdef";

/* 0: written as is; 1: needs an escape. */
static unsigned char needs_escape[256];

static void init_escapes(void) {
    for (int c = 0; c < 0x20; c++) needs_escape[c] = 1;
    needs_escape['"'] = 1;
    needs_escape['\\'] = 1;
}

/* Whether none of the 8 bytes of ``x`` needs an escape (none below 0x20, none '"' or '\\'):
 * the "has a byte less than n" and "has a zero byte" tests of bit-twiddling folklore. */
static inline int clean8(uint64_t x) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t hits = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) |
                    ((backslash - ones) & ~backslash);
    return (hits & high) == 0;
}

/* The worst case of one escaped byte is 6 bytes (\u00xx). */
static char *write_escaped(char *out, const char *s, Py_ssize_t n) {
    *out++ = '"';
    Py_ssize_t i = 0;
    for (;;) {
        uint64_t x;
        while (i + 8 <= n && (memcpy(&x, s + i, 8), clean8(x))) { /* 8 plain bytes at once */
            memcpy(out, s + i, 8);
            out += 8;
            i += 8;
        }
        if (i >= n) break;
        unsigned char c = (unsigned char)s[i++];
        if (!needs_escape[c]) {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        case '\f': *out++ = 'f'; break;
        case '\r': *out++ = 'r'; break;
        default:
            *out++ = 'u'; *out++ = '0'; *out++ = '0';
            *out++ = HEX[c >> 4]; *out++ = HEX[c & 15];
        }
    }
    *out++ = '"';
    return out;
}

static inline char *write_raw(char *out, const char *s, Py_ssize_t n) {
    memcpy(out, s, (size_t)n);
    return out + n;
}

#define WRITE_LIT(out, lit) write_raw((out), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* A str's UTF-8 bytes, or NULL with the error cleared (no UTF-8 form): the caller falls back. */
static const char *utf8_of(PyObject *s, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(s)) return NULL;
    const char *p = PyUnicode_AsUTF8AndSize(s, n);
    if (p == NULL) PyErr_Clear();
    return p;
}

static PyObject *ascii_str(const char *s, Py_ssize_t n) {
    PyObject *o = PyUnicode_New(n, 127);
    if (o != NULL) memcpy(PyUnicode_1BYTE_DATA(o), s, (size_t)n);
    return o;
}

static int Encoder_init(Encoder *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"record_type", "prefix", "template", "dumps", "fallback",
                             "fallback_log", "admit", "counts", "max_templates", NULL};
    PyObject *record_type, *template_fn, *dumps, *fallback, *fallback_log, *admit, *counts;
    const char *prefix;
    Py_ssize_t prefix_len, max_templates;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!s#OOOOOO!n", kwlist, &PyType_Type,
                                     &record_type, &prefix, &prefix_len, &template_fn, &dumps,
                                     &fallback, &fallback_log, &admit, &PyDict_Type, &counts,
                                     &max_templates))
        return -1;
    if (!PyType_IsSubtype((PyTypeObject *)record_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "record_type must be a tuple subclass");
        return -1;
    }
    if (prefix_len != ID_PREFIX) {
        PyErr_Format(PyExc_ValueError, "prefix must be %d characters", ID_PREFIX);
        return -1;
    }
    PyObject *templates = PyDict_New();
    if (templates == NULL) return -1;
    Py_INCREF(record_type);
    Py_XSETREF(self->record_type, (PyTypeObject *)record_type);
    Py_INCREF(template_fn);
    Py_XSETREF(self->template_fn, template_fn);
    Py_INCREF(dumps);
    Py_XSETREF(self->dumps, dumps);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_INCREF(counts);
    Py_XSETREF(self->counts, counts);
    Py_INCREF(fallback_log);
    Py_XSETREF(self->fallback_log, fallback_log);
    Py_INCREF(admit);
    Py_XSETREF(self->admit, admit);
    Py_XSETREF(self->templates, templates);
    self->max_templates = max_templates;
    memcpy(self->prefix, prefix, ID_PREFIX);
    self->counter = 0;
    self->second = -1;
    return 0;
}

static int Encoder_traverse(Encoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->record_type);
    Py_VISIT(self->template_fn);
    Py_VISIT(self->dumps);
    Py_VISIT(self->fallback);
    Py_VISIT(self->counts);
    Py_VISIT(self->fallback_log);
    Py_VISIT(self->admit);
    Py_VISIT(self->templates);
    return 0;
}

static int Encoder_clear(Encoder *self) {
    Py_CLEAR(self->record_type);
    Py_CLEAR(self->template_fn);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->counts);
    Py_CLEAR(self->fallback_log);
    Py_CLEAR(self->admit);
    Py_CLEAR(self->templates);
    return 0;
}

static void Encoder_dealloc(Encoder *self) {
    PyObject_GC_UnTrack(self);
    Encoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The template of (route, model, phase): cached by the three objects' identities (the cache
 * holds them, so an address is never reused while cached), made by template_fn on a miss. A
 * borrowed reference to an 8-tuple (ExposureEncoder._parts): the payload's 5 constant parts
 * (bytes), the key the exposure is counted under, the names of the attributes the surface
 * logs (a tuple), and whether the route is in an experiment (its answers logged); or NULL with
 * an exception. */
static PyObject *template_of(Encoder *self, PyObject *route, PyObject *model, PyObject *phase) {
    uint64_t mix = (uint64_t)(uintptr_t)route * 0x9E3779B97F4A7C15ULL ^
                   (uint64_t)(uintptr_t)model * 0xC2B2AE3D27D4EB4FULL ^
                   (uint64_t)(uintptr_t)phase * 0x165667B19E3779F9ULL;
    PyObject *key = PyLong_FromUnsignedLongLong(mix);
    if (key == NULL) return NULL;
    PyObject *entry = PyDict_GetItemWithError(self->templates, key);
    if (entry != NULL && PyTuple_GET_ITEM(entry, 0) == route &&
        PyTuple_GET_ITEM(entry, 1) == model && PyTuple_GET_ITEM(entry, 2) == phase) {
        Py_DECREF(key);
        return PyTuple_GET_ITEM(entry, 3);
    }
    if (PyErr_Occurred()) goto fail;
    PyObject *parts = PyObject_CallFunctionObjArgs(self->template_fn, route, model, phase, NULL);
    if (parts == NULL) goto fail;
    int ok = PyTuple_CheckExact(parts) && PyTuple_GET_SIZE(parts) == 8;
    for (int i = 0; ok && i < 5; i++) ok = PyBytes_CheckExact(PyTuple_GET_ITEM(parts, i));
    if (ok) ok = PyTuple_CheckExact(PyTuple_GET_ITEM(parts, 6));
    if (!ok) {
        Py_DECREF(parts);
        PyErr_SetString(PyExc_TypeError, "template() must return gateway/exposure_json.py's 8");
        goto fail;
    }
    entry = PyTuple_Pack(4, route, model, phase, parts);
    Py_DECREF(parts);
    if (entry == NULL) goto fail;
    if (PyDict_GET_SIZE(self->templates) >= self->max_templates)
        PyDict_Clear(self->templates); /* configurations replaced: their routes are gone */
    if (PyDict_SetItem(self->templates, key, entry) < 0) {
        Py_DECREF(entry);
        goto fail;
    }
    Py_DECREF(entry); /* the dict holds it */
    Py_DECREF(key);
    return PyTuple_GET_ITEM(entry, 3);
fail:
    Py_DECREF(key);
    return NULL;
}

static char *write_int(char *out, long long v) {
    char digits[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *out++ = '-';
    while (n) *out++ = digits[--n];
    return out;
}

/* counts[key] += 1 */
static int count_one(PyObject *counts, PyObject *key) {
    PyObject *n = PyDict_GetItemWithError(counts, key);
    if (n == NULL && PyErr_Occurred()) return -1;
    long long v = n == NULL ? 0 : PyLong_AsLongLong(n);
    if (v == -1 && PyErr_Occurred()) return -1;
    PyObject *next = PyLong_FromLongLong(v + 1);
    if (next == NULL) return -1;
    int r = PyDict_SetItem(counts, key, next);
    Py_DECREF(next);
    return r;
}

#define MAX_STACK_ITEMS 128

#define FALLBACK Py_NotImplemented /* "the Python encoder must do it" (never returned to Python) */

/* The record of one exposure from its template (see template_of) and the request's fields; a
 * new reference, NULL with an exception, or FALLBACK (borrowed) for what this encoder cannot
 * write: a string without a UTF-8 form, an item that is not a dict with a str "id", a bucket
 * too large for C. ``attributes``: a dict (written when not empty) or None. */
static PyObject *encode_record(Encoder *self, PyObject *template, PyObject *unit,
                               PyObject *items, PyObject *source, PyObject *rid,
                               PyObject *bucket_obj, PyObject *attributes) {
    if (!(PyList_CheckExact(items) || PyTuple_CheckExact(items)) ||
        !PyLong_CheckExact(bucket_obj) || !(attributes == Py_None || PyDict_CheckExact(attributes)))
        return FALLBACK;
    long long bucket = PyLong_AsLongLong(bucket_obj);
    if (bucket == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return FALLBACK;
    }
    Py_ssize_t unit_n, rid_n, source_n;
    const char *unit_s = utf8_of(unit, &unit_n);
    const char *rid_s = utf8_of(rid, &rid_n);
    const char *source_s = utf8_of(source, &source_n);
    if (unit_s == NULL || rid_s == NULL || source_s == NULL) return FALLBACK;

    /* The item ids: their UTF-8 and the room they take escaped. */
    Py_ssize_t n_items = PySequence_Fast_GET_SIZE(items);
    PyObject **item_objs = PySequence_Fast_ITEMS(items);
    const char *stack_ids[MAX_STACK_ITEMS];
    Py_ssize_t stack_lens[MAX_STACK_ITEMS];
    const char **ids = stack_ids;
    Py_ssize_t *lens = stack_lens;
    PyObject *attrs_json = NULL, *result = NULL;
    char stack[STACK_BUF];
    char *buf = stack;
    if (n_items > MAX_STACK_ITEMS) {
        ids = PyMem_Malloc((size_t)n_items * sizeof *ids);
        lens = PyMem_Malloc((size_t)n_items * sizeof *lens);
        if (ids == NULL || lens == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_ssize_t size = 256 + 6 * (unit_n + rid_n + source_n);
    for (Py_ssize_t i = 0; i < n_items; i++) {
        PyObject *item = item_objs[i];
        PyObject *id = PyDict_CheckExact(item) ? PyDict_GetItemWithError(item, id_key) : NULL;
        if (id == NULL && PyErr_Occurred()) goto done;
        if (id == NULL || (ids[i] = utf8_of(id, &lens[i])) == NULL) {
            result = FALLBACK;
            goto done;
        }
        size += 6 * lens[i] + 3;
    }
    for (int i = 0; i < 5; i++) size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(template, i));
    if (attributes != Py_None && PyDict_GET_SIZE(attributes) > 0) {
        attrs_json = PyObject_CallOneArg(self->dumps, attributes);
        if (attrs_json == NULL) goto done;
        if (!PyBytes_CheckExact(attrs_json)) {
            PyErr_SetString(PyExc_TypeError, "dumps() must return bytes");
            goto done;
        }
        size += 16 + PyBytes_GET_SIZE(attrs_json);
    }

    /* The event id: the prefix and the counter's low 48 bits as 12 hex digits. */
    char event_id[ID_PREFIX + 12];
    memcpy(event_id, self->prefix, ID_PREFIX);
    uint64_t count = self->counter++ & 0xFFFFFFFFFFFFULL;
    for (int i = 11; i >= 0; i--, count >>= 4) event_id[ID_PREFIX + i] = HEX[count & 15];

    /* The timestamp, as gateway/clock.py's UtcClock: 2026-11-26T18:04:30.123456Z. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if ((int64_t)now.tv_sec != self->second) {
        struct tm tm;
        time_t sec = now.tv_sec;
        gmtime_r(&sec, &tm);
        strftime(self->date, sizeof self->date, "%Y-%m-%dT%H:%M:%S.", &tm);
        self->second = (int64_t)now.tv_sec;
    }
    char ts[27];
    memcpy(ts, self->date, 20);
    long us = now.tv_nsec / 1000;
    for (int i = 25; i >= 20; i--, us /= 10) ts[i] = (char)('0' + us % 10);
    ts[26] = 'Z';

    if (size > STACK_BUF && (buf = PyMem_Malloc((size_t)size)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    char *out = buf;
    out = WRITE_LIT(out, "{\"type\":\"exposure\",\"event_id\":\"");
    out = write_raw(out, event_id, sizeof event_id);
    out = WRITE_LIT(out, "\",\"ts\":\"");
    out = write_raw(out, ts, sizeof ts);
    *out++ = '"';
#define PART(i) write_raw(out, PyBytes_AS_STRING(PyTuple_GET_ITEM(template, i)), \
                          PyBytes_GET_SIZE(PyTuple_GET_ITEM(template, i)))
    out = PART(0); /* ,"experiment":…,"variant":…,"unit_id": */
    out = write_escaped(out, unit_s, unit_n);
    out = PART(1); /* ,"surface":…,"model":…,"model_version":…,"items": */
    *out++ = '[';
    for (Py_ssize_t i = 0; i < n_items; i++) {
        if (i) *out++ = ',';
        out = write_escaped(out, ids[i], lens[i]);
    }
    *out++ = ']';
    out = PART(2); /* ,"config_version":…,"source": */
    out = write_escaped(out, source_s, source_n);
    out = WRITE_LIT(out, ",\"request_id\":");
    out = write_escaped(out, rid_s, rid_n);
    out = PART(3); /* [,"forced":true][,"phase":…,"weights":…] */
    if (bucket >= 0) {
        out = WRITE_LIT(out, ",\"bucket\":");
        out = write_int(out, bucket);
    }
    out = PART(4); /* [,"holdout":true] */
#undef PART
    if (attrs_json != NULL) {
        out = WRITE_LIT(out, ",\"attributes\":");
        out = write_raw(out, PyBytes_AS_STRING(attrs_json), PyBytes_GET_SIZE(attrs_json));
    }
    *out++ = '}';

    PyObject *payload = PyBytes_FromStringAndSize(buf, out - buf);
    PyObject *id_str = ascii_str(event_id, sizeof event_id);
    PyObject *ts_str = ascii_str(ts, sizeof ts);
    if (payload != NULL && id_str != NULL && ts_str != NULL)
        result = self->record_type->tp_alloc(self->record_type, 3);
    if (result == NULL) {
        Py_XDECREF(payload);
        Py_XDECREF(id_str);
        Py_XDECREF(ts_str);
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, id_str);
    PyTuple_SET_ITEM(result, 1, ts_str);
    PyTuple_SET_ITEM(result, 2, payload);
    if (count_one(self->counts, PyTuple_GET_ITEM(template, 5)) < 0) Py_CLEAR(result);
done:
    if (buf != stack) PyMem_Free(buf);
    if (ids != stack_ids) PyMem_Free(ids);
    if (lens != stack_lens) PyMem_Free(lens);
    Py_XDECREF(attrs_json);
    return result;
}

/* ``encode(route, model, phase, unit_id, items, source, request_id, bucket, attributes)``:
 * ``ExposureEncoder.exposure`` (gateway/exposure_json.py), whose arguments these are: a new
 * ``record_type(event_id, ts, payload)``, counted. */
static PyObject *Encoder_encode(Encoder *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "encode() takes 9 arguments");
        return NULL;
    }
    PyObject *template = template_of(self, args[0], args[1], args[2]);
    if (template == NULL) return NULL;
    Py_INCREF(template);
    PyObject *record =
        encode_record(self, template, args[3], args[4], args[5], args[6], args[7], args[8]);
    Py_DECREF(template);
    if (record == FALLBACK) return PyObject_Vectorcall(self->fallback, args, (size_t)nargs, NULL);
    return record;
}

/* ``log(answer, unit_id, request_id, attributes)``: ``ExposureEncoder.log``. The answer is
 * gateway/serving.py's Answer: (route, model, items, source, bucket, phase). Nothing for a route
 * outside any experiment; otherwise the record, with the attributes the surface logs, goes to
 * ``admit``. */
static PyObject *Encoder_log(Encoder *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "log() takes 4 arguments");
        return NULL;
    }
    PyObject *answer = args[0], *attributes = args[3];
    if (!PyTuple_Check(answer) || PyTuple_GET_SIZE(answer) != 6 ||
        !(attributes == Py_None || PyDict_CheckExact(attributes)))
        return PyObject_Vectorcall(self->fallback_log, args, (size_t)nargs, NULL);
    PyObject *template = template_of(self, PyTuple_GET_ITEM(answer, 0),
                                     PyTuple_GET_ITEM(answer, 1), PyTuple_GET_ITEM(answer, 5));
    if (template == NULL) return NULL;
    if (PyTuple_GET_ITEM(template, 7) != Py_True) Py_RETURN_NONE; /* outside any experiment */
    Py_INCREF(template);
    PyObject *logged = PyTuple_GET_ITEM(template, 6), *kept = Py_None, *record = NULL;
    Py_INCREF(kept);
    if (attributes != Py_None && PyDict_GET_SIZE(attributes) > 0 && PyTuple_GET_SIZE(logged) > 0) {
        Py_SETREF(kept, PyDict_New());
        if (kept == NULL) goto done;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(logged); i++) {
            PyObject *name = PyTuple_GET_ITEM(logged, i);
            PyObject *value = PyDict_GetItemWithError(attributes, name);
            if (value == NULL && PyErr_Occurred()) goto done;
            if (value != NULL && PyDict_SetItem(kept, name, value) < 0) goto done;
        }
    }
    record = encode_record(self, template, args[1], PyTuple_GET_ITEM(answer, 2),
                           PyTuple_GET_ITEM(answer, 3), args[2], PyTuple_GET_ITEM(answer, 4), kept);
    if (record == FALLBACK) {
        record = PyObject_Vectorcall(self->fallback_log, args, (size_t)nargs, NULL);
        goto done;
    }
    if (record != NULL) Py_SETREF(record, PyObject_CallOneArg(self->admit, record));
done:
    Py_DECREF(template);
    Py_XDECREF(kept);
    if (record == NULL) return NULL;
    Py_DECREF(record);
    Py_RETURN_NONE;
}

/* gateway/sinks.py's LogEntry line of an encoded exposure, ``head + '"' + event_id +
 * '","timestamp":"' + ts + '"' + middle + payload + '}'``, with the record's hour (``ts[:13]``):
 * ``(hour, line)``; NULL with an exception if ``record`` is not an encoded exposure. */
static PyObject *line_of(PyObject *head, PyObject *middle, PyObject *record) {
    if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) != 3) {
        PyErr_SetString(PyExc_TypeError, "not an encoded exposure");
        return NULL;
    }
    PyObject *id = PyTuple_GET_ITEM(record, 0), *ts = PyTuple_GET_ITEM(record, 1);
    PyObject *payload = PyTuple_GET_ITEM(record, 2);
    if (!PyUnicode_CheckExact(id) || !PyUnicode_IS_ASCII(id) || !PyUnicode_CheckExact(ts) ||
        !PyUnicode_IS_ASCII(ts) || PyUnicode_GET_LENGTH(ts) < 13 || !PyBytes_CheckExact(payload)) {
        PyErr_SetString(PyExc_TypeError, "not an encoded exposure");
        return NULL;
    }
    Py_ssize_t id_n = PyUnicode_GET_LENGTH(id), ts_n = PyUnicode_GET_LENGTH(ts);
    Py_ssize_t size = PyBytes_GET_SIZE(head) + id_n + ts_n + PyBytes_GET_SIZE(middle) +
                      PyBytes_GET_SIZE(payload) + (Py_ssize_t)sizeof "\"\",\"timestamp\":\"\"}" - 1;
    PyObject *line = PyBytes_FromStringAndSize(NULL, size);
    if (line == NULL) return NULL;
    char *out = PyBytes_AS_STRING(line);
    out = write_raw(out, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head));
    *out++ = '"';
    out = write_raw(out, (const char *)PyUnicode_1BYTE_DATA(id), id_n);
    out = WRITE_LIT(out, "\",\"timestamp\":\"");
    out = write_raw(out, (const char *)PyUnicode_1BYTE_DATA(ts), ts_n);
    *out++ = '"';
    out = write_raw(out, PyBytes_AS_STRING(middle), PyBytes_GET_SIZE(middle));
    out = write_raw(out, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload));
    *out++ = '}';
    assert(out == PyBytes_AS_STRING(line) + size);
    PyObject *hour = PyUnicode_Substring(ts, 0, 13);
    if (hour == NULL) {
        Py_DECREF(line);
        return NULL;
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(line);
        Py_DECREF(hour);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, hour);
    PyTuple_SET_ITEM(result, 1, line);
    return result;
}

/* ``LineEncoder(head, middle, record_type, fallback)``: a LogEntry sink's ``encode``
 * (gateway/sinks.py): ``(hour, line)`` of a record, in C for an encoded exposure (a
 * ``record_type``), by ``fallback`` for any other record. */
typedef struct {
    PyObject_HEAD
    PyObject *head, *middle, *record_type, *fallback;
} LineEncoder;

static int LineEncoder_init(LineEncoder *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"head", "middle", "record_type", "fallback", NULL};
    PyObject *head, *middle, *record_type, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "SSO!O", kwlist, &head, &middle, &PyType_Type,
                                     &record_type, &fallback))
        return -1;
    Py_INCREF(head);
    Py_XSETREF(self->head, head);
    Py_INCREF(middle);
    Py_XSETREF(self->middle, middle);
    Py_INCREF(record_type);
    Py_XSETREF(self->record_type, record_type);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    return 0;
}

static int LineEncoder_traverse(LineEncoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->record_type);
    Py_VISIT(self->fallback);
    return 0;
}

static int LineEncoder_clear(LineEncoder *self) {
    Py_CLEAR(self->head);
    Py_CLEAR(self->middle);
    Py_CLEAR(self->record_type);
    Py_CLEAR(self->fallback);
    return 0;
}

static void LineEncoder_dealloc(LineEncoder *self) {
    PyObject_GC_UnTrack(self);
    LineEncoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *LineEncoder_encode(LineEncoder *self, PyObject *record) {
    if ((PyObject *)Py_TYPE(record) == self->record_type)
        return line_of(self->head, self->middle, record);
    return PyObject_CallOneArg(self->fallback, record);
}

static PyMethodDef LineEncoder_methods[] = {
    {"encode", (PyCFunction)LineEncoder_encode, METH_O,
     "encode(record)\n--\n\n(hour, LogEntry line) of a record."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LineEncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway._exposure.LineEncoder",
    .tp_basicsize = sizeof(LineEncoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "LineEncoder(head, middle, record_type, fallback)\n--\n\n"
              "A LogEntry sink's encode: encoded exposures in C, other records by fallback.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)LineEncoder_init,
    .tp_dealloc = (destructor)LineEncoder_dealloc,
    .tp_traverse = (traverseproc)LineEncoder_traverse,
    .tp_clear = (inquiry)LineEncoder_clear,
    .tp_methods = LineEncoder_methods,
};

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))Encoder_encode, METH_FASTCALL,
     "encode(route, model, phase, unit_id, items, source, request_id, bucket, attributes)\n--\n\n"
     "A new EncodedExposure (event_id, ts, payload): ExposureEncoder.exposure in one call."},
    {"log", (PyCFunction)(void (*)(void))Encoder_log, METH_FASTCALL,
     "log(answer, unit_id, request_id, attributes)\n--\n\n"
     "ExposureEncoder.log in one call: the answer's exposure, if any, to admit()."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway._exposure.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Encoder(record_type, prefix, template, dumps, fallback, fallback_log, admit, "
              "counts, max_templates)\n--\n\n"
              "Exposure records, one C call each.",
    .tp_traverse = (traverseproc)Encoder_traverse,
    .tp_clear = (inquiry)Encoder_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
};

static PyMethodDef module_methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "gateway._exposure",
    "Exposure records encoded in C (gateway/exposure_json.py is the reference).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__exposure(void) {
    init_escapes();
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&LineEncoderType) < 0) return NULL;
    id_key = PyUnicode_InternFromString("id");
    if (id_key == NULL) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddType(m, &EncoderType) < 0 || PyModule_AddType(m, &LineEncoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
