/* The assignment hash in one C call: experiments/assignment.py's ``bucket``.
 *
 * ``bucket(salt, unit_id)`` is the first 8 bytes of ``sha256(f"{salt}:{unit_id}")`` read
 * big-endian, modulo 10,000 (DESIGN.md, "Assignment"). The Python form costs ~9,000
 * instructions a call on CPython 3.11 (hashlib's object, ``digest()``'s context copy, the
 * f-string, ``int.from_bytes``); this one hashes with OpenSSL's libcrypto (the library hashlib
 * itself uses) through one reused context. tests/experiments/test_assignment.py holds the two
 * equal, and both to the pinned vectors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>

#define BUCKETS 10000

static EVP_MD *sha256;
static EVP_MD_CTX *ctx; /* reused: the GIL serialises the calls */

static PyObject *bucket(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bucket(salt: str, unit_id: str)");
        return NULL;
    }
    Py_ssize_t salt_n, unit_n;
    const char *salt = PyUnicode_AsUTF8AndSize(args[0], &salt_n);
    if (salt == NULL) return NULL; /* UnicodeEncodeError, as str.encode() raises */
    const char *unit = PyUnicode_AsUTF8AndSize(args[1], &unit_n);
    if (unit == NULL) return NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    if (!EVP_DigestInit_ex2(ctx, sha256, NULL) || !EVP_DigestUpdate(ctx, salt, (size_t)salt_n) ||
        !EVP_DigestUpdate(ctx, ":", 1) || !EVP_DigestUpdate(ctx, unit, (size_t)unit_n) ||
        !EVP_DigestFinal_ex(ctx, digest, NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not hash");
        return NULL;
    }
    uint64_t first = 0;
    for (int i = 0; i < 8; i++) first = first << 8 | digest[i];
    return PyLong_FromLong((long)(first % BUCKETS));
}

static PyMethodDef methods[] = {
    {"bucket", (PyCFunction)(void (*)(void))bucket, METH_FASTCALL,
     "bucket(salt, unit_id)\n--\n\nBucket in [0, 10000) of unit_id under salt."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "experiments._bucket",
    "The assignment hash in C (experiments/assignment.py is the reference).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bucket(void) {
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    ctx = EVP_MD_CTX_new();
    if (sha256 == NULL || ctx == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA-256 here");
        return NULL;
    }
    return PyModule_Create(&module_def);
}
