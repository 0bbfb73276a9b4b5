/* broker.storage._seal: the per-line CRC32C check of segment format 2, in C.
 *
 * Optional accelerator for broker/storage/checksum.py, which holds the format's
 * definition and a pure-Python fallback producing the same bytes. Sealing in Python
 * costs ~3,600 instructions per record (slice, crc32c() call, %-format, concatenation),
 * 26% of a pipelined publish; here it is one allocation and one pass over the bytes.
 *
 * A sealed line is the orjson dump without its closing brace, then
 * ,"c":<decimal CRC32C of everything before ,"c":>} and LF.
 *
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78, initial and final XOR ~0) uses
 * SSE4.2's crc32 instruction when the CPU has it, else slicing-by-8 tables. The tables
 * and the CPU flag are filled once at import and only read afterwards.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* -DSEAL_NO_X86 builds only the portable code, to check that it compiles. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(SEAL_NO_X86)
#define SEAL_X86 1
#include <nmmintrin.h>
#endif

#define POLY 0x82F63B78u
#define MAX_DIGITS 10 /* 2**32 - 1 has ten digits */

static const char CHECK_FIELD[] = ",\"c\":";
#define CHECK_FIELD_LEN 5

static uint32_t table[8][256];
static int have_sse42;

static void
fill_tables(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        }
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        for (int t = 1; t < 8; t++) {
            uint32_t prev = table[t - 1][n];
            table[t][n] = (prev >> 8) ^ table[0][prev & 0xff];
        }
    }
}

/* Slicing-by-8 on the raw (not inverted) CRC register. */
static uint32_t
crc_table(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint32_t lo = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                      (uint32_t)p[3] << 24;
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                      (uint32_t)p[7] << 24;
        lo ^= crc;
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    }
    return crc;
}

#ifdef SEAL_X86
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(uint32_t crc, const unsigned char *p, size_t n)
{
#if defined(__x86_64__)
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
#else
    while (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        crc = _mm_crc32_u32(crc, w);
        p += 4;
        n -= 4;
    }
#endif
    while (n--) {
        crc = _mm_crc32_u8(crc, *p++);
    }
    return crc;
}
#endif

static uint32_t
crc32c(const unsigned char *p, size_t n)
{
#ifdef SEAL_X86
    if (have_sse42) {
        return ~crc_sse42(0xffffffffu, p, n);
    }
#endif
    return ~crc_table(0xffffffffu, p, n);
}

/* Decimal digits of v into out (no terminator); returns how many. */
static Py_ssize_t
write_decimal(char *out, uint32_t v)
{
    char tmp[MAX_DIGITS];
    Py_ssize_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

/* The sealed line for one dump (a new reference), or NULL with an exception set. */
static PyObject *
seal_one(PyObject *dump)
{
    if (!PyBytes_Check(dump)) {
        PyErr_Format(PyExc_TypeError, "expected bytes, got %.100s", Py_TYPE(dump)->tp_name);
        return NULL;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(dump);
    const char *src = PyBytes_AS_STRING(dump);
    if (len == 0 || src[len - 1] != '}') {
        PyErr_SetString(PyExc_ValueError, "a dump to seal must end with '}'");
        return NULL;
    }
    Py_ssize_t body = len - 1;
    char digits[MAX_DIGITS];
    Py_ssize_t nd = write_decimal(digits, crc32c((const unsigned char *)src, (size_t)body));
    PyObject *line = PyBytes_FromStringAndSize(NULL, body + CHECK_FIELD_LEN + nd + 2);
    if (line == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(line);
    memcpy(out, src, (size_t)body);
    out += body;
    memcpy(out, CHECK_FIELD, CHECK_FIELD_LEN);
    out += CHECK_FIELD_LEN;
    memcpy(out, digits, (size_t)nd);
    out += nd;
    out[0] = '}';
    out[1] = '\n';
    return line;
}

static PyObject *
seal(PyObject *Py_UNUSED(module), PyObject *dump)
{
    return seal_one(dump);
}

static PyObject *
seal_run(PyObject *Py_UNUSED(module), PyObject *dumps)
{
    if (!PyList_Check(dumps)) {
        PyErr_Format(PyExc_TypeError, "expected a list of bytes, got %.100s",
                     Py_TYPE(dumps)->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(dumps);
    PyObject *lines = PyList_New(n);
    if (lines == NULL) {
        return NULL;
    }
    /* Nothing below runs Python code, so the input list cannot change size meanwhile. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = seal_one(PyList_GET_ITEM(dumps, i));
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        PyList_SET_ITEM(lines, i, line);
    }
    return lines;
}

/* Exactly checksum.check: an optional LF, "}", the last ,"c": before it, 1-10 ASCII
 * digits between, and their value equal to the CRC32C of everything before ,"c":. */
static PyObject *
check_line(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "expected bytes, got %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const unsigned char *line = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t end = PyBytes_GET_SIZE(arg) - 1;
    if (end >= 0 && line[end] == '\n') {
        end--;
    }
    if (end < 0 || line[end] != '}') {
        Py_RETURN_FALSE;
    }
    /* The digits run back from the brace; the field must sit right before them (a later
     * ,"c": would put its ':' among the digits, so this is the last one, as rfind finds). */
    Py_ssize_t first = end;
    while (first > 0 && end - first < MAX_DIGITS + 1 && line[first - 1] >= '0' &&
           line[first - 1] <= '9') {
        first--;
    }
    Py_ssize_t nd = end - first;
    if (nd == 0 || nd > MAX_DIGITS) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t cut = first - CHECK_FIELD_LEN;
    if (cut < 0 || memcmp(line + cut, CHECK_FIELD, CHECK_FIELD_LEN) != 0) {
        Py_RETURN_FALSE;
    }
    uint64_t value = 0;
    for (Py_ssize_t i = first; i < end; i++) {
        value = value * 10 + (uint64_t)(line[i] - '0');
    }
    if (value == (uint64_t)crc32c(line, (size_t)cut)) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* For tests: the CRC32C as the dispatching code computes it, and by the tables alone. */
static int
as_buffer(PyObject *arg, Py_buffer *view)
{
    return PyObject_GetBuffer(arg, view, PyBUF_SIMPLE);
}

static PyObject *
crc32c_py(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    if (as_buffer(arg, &view) < 0) {
        return NULL;
    }
    uint32_t crc = crc32c((const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *
crc32c_table_py(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    if (as_buffer(arg, &view) < 0) {
        return NULL;
    }
    uint32_t crc = ~crc_table(0xffffffffu, (const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef methods[] = {
    {"seal", seal, METH_O, "The line for one orjson dump ending in '}': check field and LF added."},
    {"seal_run", seal_run, METH_O, "seal() of each dump in a list, as a new list."},
    {"check_line", check_line, METH_O,
     "True if the line (with or without its LF) ends with a check field that matches."},
    {"crc32c", crc32c_py, METH_O, "CRC32C of a buffer, as seal computes it."},
    {"crc32c_table", crc32c_table_py, METH_O,
     "CRC32C of a buffer by the tables alone (the path of CPUs without SSE4.2)."},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    fill_tables();
#ifdef SEAL_X86
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
    return PyModule_AddIntConstant(module, "HARDWARE", have_sse42);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "broker.storage._seal",
    .m_doc = "Per-line CRC32C sealing and checking of segment format 2, in C.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__seal(void)
{
    return PyModuleDef_Init(&module_def);
}
