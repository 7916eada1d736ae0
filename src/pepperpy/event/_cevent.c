/* The hot paths' event construction, in C: make_event(type, data, metadata) for emit,
 * restore() and freeze_parsed() for a store's reads; shape_key() and trie_lookup() for
 * PatternIndex.
 *
 * It does exactly what the Python make_event in _event.py does and leaves the event in
 * exactly the state that function leaves it in (the same seven slots holding the same
 * kinds of values), so every other method of Event works on either. Anything but the
 * common case (a flat dict of JSON scalars, or a scalar) is handed to the same Python
 * helpers the Python version calls, so errors and their messages are the same.
 * tests/core/test_cevent.py checks the two against each other.
 *
 * Bound once by _event.py through bind(); single-phase init, one set of bindings per
 * process (the classes it binds to are module-level singletons).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define N_SLOTS 7
#define MAX_ATOMS 16

enum { S_TYPE, S_DATA, S_METADATA, S_ID, S_TS, S_VERSION, S_EXTRA };
static const char *slot_names[N_SLOTS] = {
    "_type", "_data", "_metadata", "_id", "_ts", "_version", "_extra",
};

static PyTypeObject *event_type = NULL;      /* Event */
static PyTypeObject *frozen_dict = NULL;     /* FrozenDict, a dict subclass */
static PyTypeObject *atoms[MAX_ATOMS];       /* _frozen._ATOMS, kept as they are */
static Py_ssize_t n_atoms = 0;
static PyObject *freeze_nested = NULL;       /* _event._freeze_nested */
static PyObject *freeze_parsed_py = NULL;    /* _frozen.freeze_parsed */
static PyObject *metadata_dict = NULL;       /* _event_checks._metadata_dict */
static PyObject *check_long_type = NULL;     /* _event_checks._check_long_type */
static Py_ssize_t long_type = 0;             /* _event_checks.LONG_TYPE */
static PyObject *last_clock = NULL;              /* _ids.CLOCK, a one-item list */
static PyObject *counter = NULL;             /* the iterator behind _ids.next_counter */
static PyObject *globals = NULL;             /* _event's module dict, for _time_ns */
static PyObject *time_ns_name = NULL;        /* "_time_ns", interned */
static PyObject *system_time_ns = NULL;      /* what _event._time_ns was at bind() */
static PyObject *empty_tuple = NULL;
static PyObject *one = NULL;
static PyObject *empty_str = NULL;          /* "", a shape's unknown token */
static Py_ssize_t offsets[N_SLOTS];

static int
is_atom(PyTypeObject *kind)
{
    for (Py_ssize_t i = 0; i < n_atoms; i++) {
        if (atoms[i] == kind) {
            return 1;
        }
    }
    return 0;
}

/* Whether a metadata dict holds only plain str, int, float, bool and None values (the
 * Python side's _SCALARS): then a shallow copy is a whole copy; anything else goes to
 * _event_checks._metadata_dict, which copies nested dicts and lists too. */
static int
flat_metadata(PyObject *metadata)
{
    Py_ssize_t pos = 0;
    PyObject *key, *item;
    while (PyDict_Next(metadata, &pos, &key, &item)) {
        PyTypeObject *kind = Py_TYPE(item);
        if (kind != &PyUnicode_Type && kind != &PyLong_Type && kind != &PyFloat_Type &&
            kind != &PyBool_Type && item != Py_None) {
            return 0;
        }
    }
    return 1;
}

/* A JSON scalar event data keeps as it is: what _frozen._is_flat takes per value. */
static int
is_flat_value(PyObject *item)
{
    PyTypeObject *kind = Py_TYPE(item);
    if (is_atom(kind)) {
        return 1;
    }
    if (kind == &PyLong_Type) {
        /* -(2**63) <= item <= 2**64 - 1 */
        int overflow = 0;
        (void)PyLong_AsLongLongAndOverflow(item, &overflow);
        if (overflow == 0) {
            return 1;
        }
        if (overflow < 0) {
            return 0;
        }
        (void)PyLong_AsUnsignedLongLong(item);
        if (PyErr_Occurred()) {
            PyErr_Clear(); /* an OverflowError: past 2**64 - 1 */
            return 0;
        }
        return 1;
    }
    if (kind == &PyFloat_Type) {
        return isfinite(PyFloat_AS_DOUBLE(item));
    }
    return 0;
}

/* FrozenDict(source) for a dict: dict's own constructor and merge, called directly (a
 * dict subclass built through type.__call__ costs three times as much). */
static PyObject *
frozen_copy(PyObject *source)
{
    PyObject *frozen = frozen_dict->tp_new(frozen_dict, empty_tuple, NULL);
    if (frozen == NULL) {
        return NULL;
    }
    if (PyDict_Merge(frozen, source, 1) < 0) {
        Py_DECREF(frozen);
        return NULL;
    }
    return frozen;
}

/* freeze(data): a FrozenDict copy of a flat dict, an atom as it is, else the Python walk. */
static PyObject *
freeze_data(PyObject *data)
{
    if (Py_IS_TYPE(data, &PyDict_Type)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(data, &pos, &key, &item)) {
            if (!Py_IS_TYPE(key, &PyUnicode_Type) || !is_flat_value(item)) {
                return PyObject_CallOneArg(freeze_nested, data);
            }
        }
        return frozen_copy(data);
    }
    if (is_atom(Py_TYPE(data))) {
        return Py_NewRef(data);
    }
    return PyObject_CallOneArg(freeze_nested, data);
}

/* _time_ns(), clamped so that it never goes back (_ids.now_ns, sharing CLOCK). The clock
 * is looked up in _event's globals on every call, as the Python make_event does, so a
 * test that replaces _event._time_ns replaces it for both. While it is still the
 * time.time_ns it was at bind(), the same clock is read here directly (CPython's
 * time.time_ns is clock_gettime(CLOCK_REALTIME) where that exists). */
static PyObject *
now_ns(void)
{
    PyObject *read = PyDict_GetItemWithError(globals, time_ns_name); /* borrowed */
    if (read == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "_event._time_ns is gone");
        }
        return NULL;
    }
    PyObject *last = PyList_GET_ITEM(last_clock, 0); /* borrowed */
#if defined(CLOCK_REALTIME) && !defined(_WIN32)
    struct timespec ts;
    if (read == system_time_ns && Py_IS_TYPE(last, &PyLong_Type) &&
        clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        int overflow = 0;
        long long before = PyLong_AsLongLongAndOverflow(last, &overflow);
        long long reading = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        if (overflow == 0 && !(before == -1 && PyErr_Occurred())) {
            if (reading < before) {
                return Py_NewRef(last);
            }
            PyObject *now = PyLong_FromLongLong(reading);
            if (now == NULL) {
                return NULL;
            }
            PyList_SET_ITEM(last_clock, 0, Py_NewRef(now));
            Py_DECREF(last); /* the list's reference to the reading it replaced */
            return now;
        }
        PyErr_Clear();
    }
#endif
    Py_INCREF(read);
    PyObject *now = PyObject_CallNoArgs(read);
    Py_DECREF(read);
    if (now == NULL) {
        return NULL;
    }
    last = PyList_GET_ITEM(last_clock, 0); /* the call may have changed it */
    int behind = PyObject_RichCompareBool(now, last, Py_LT);
    if (behind < 0) {
        Py_DECREF(now);
        return NULL;
    }
    if (behind) {
        Py_DECREF(now);
        return Py_NewRef(last);
    }
    if (PyList_SetItem(last_clock, 0, Py_NewRef(now)) < 0) {
        Py_DECREF(now);
        return NULL;
    }
    return now;
}

#define SLOT(obj, i) (*(PyObject **)((char *)(obj) + offsets[i]))

static PyObject *
make_event(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "make_event() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cevent.bind() was not called");
        return NULL;
    }
    PyObject *type = args[0], *data = args[1], *metadata = args[2];
    if (!PyUnicode_Check(type) || PyUnicode_GET_LENGTH(type) == 0) {
        PyErr_Format(PyExc_TypeError, "event type must be a non-empty str, got %R", type);
        return NULL;
    }
    /* a str subclass (a StrEnum member) as the plain str it holds, as _plain_type does */
    type = Py_IS_TYPE(type, &PyUnicode_Type) ? Py_NewRef(type) : PyUnicode_FromObject(type);
    if (type == NULL) {
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(type) > long_type) {
        PyObject *ok = PyObject_CallOneArg(check_long_type, type);
        if (ok == NULL) {
            Py_DECREF(type);
            return NULL;
        }
        Py_DECREF(ok);
    }
    PyObject *event = event_type->tp_alloc(event_type, 0);
    if (event == NULL) {
        Py_DECREF(type);
        return NULL;
    }
    SLOT(event, S_TYPE) = type; /* the reference taken above */
    PyObject *value = freeze_data(data);
    if (value == NULL) {
        goto fail;
    }
    SLOT(event, S_DATA) = value;
    if (metadata == Py_None) {
        value = Py_NewRef(Py_None);
    }
    else if (Py_IS_TYPE(metadata, &PyDict_Type) && flat_metadata(metadata)) {
        value = PyDict_Copy(metadata);
    }
    else {
        value = PyObject_CallOneArg(metadata_dict, metadata);
    }
    if (value == NULL) {
        goto fail;
    }
    SLOT(event, S_METADATA) = value;
    value = now_ns();
    if (value == NULL) {
        goto fail;
    }
    SLOT(event, S_TS) = value;
    value = PyIter_Next(counter);
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "the event id counter is exhausted");
        }
        goto fail;
    }
    SLOT(event, S_ID) = value;
    SLOT(event, S_VERSION) = Py_NewRef(one);
    SLOT(event, S_EXTRA) = Py_NewRef(Py_None);
    return event;
fail:
    Py_DECREF(event); /* its dealloc clears the slots set so far */
    return NULL;
}

/* restore(type, data, metadata, id, ts, version, extra): an Event holding these seven
 * slot values as they are (a store's read path: all of them checked or built already). */
static PyObject *
restore(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != N_SLOTS) {
        PyErr_Format(PyExc_TypeError, "restore() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cevent.bind() was not called");
        return NULL;
    }
    PyObject *event = event_type->tp_alloc(event_type, 0);
    if (event == NULL) {
        return NULL;
    }
    /* the arguments come in slot order (S_TYPE .. S_EXTRA) */
    for (int i = 0; i < N_SLOTS; i++) {
        SLOT(event, i) = Py_NewRef(args[i]);
    }
    return event;
}

/* freeze_parsed(value) for orjson's output: a dict holding no dict or list becomes a
 * FrozenDict, a scalar stays as it is, the rest goes to the Python walk (depth checks). */
static PyObject *
freeze_parsed(PyObject *Py_UNUSED(module), PyObject *value)
{
    if (frozen_dict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cevent.bind() was not called");
        return NULL;
    }
    if (Py_IS_TYPE(value, &PyDict_Type)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(value, &pos, &key, &item)) {
            if (Py_IS_TYPE(item, &PyDict_Type) || Py_IS_TYPE(item, &PyList_Type)) {
                return PyObject_CallOneArg(freeze_parsed_py, value);
            }
        }
        return frozen_copy(value);
    }
    if (Py_IS_TYPE(value, &PyList_Type)) {
        return PyObject_CallOneArg(freeze_parsed_py, value);
    }
    return Py_NewRef(value);
}

static int
find_offsets(PyTypeObject *kind)
{
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *descr = PyDict_GetItemString(kind->tp_dict, slot_names[i]); /* borrowed */
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "Event has no slot %s", slot_names[i]);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || member->flags != 0) {
            PyErr_Format(PyExc_TypeError, "Event slot %s is not a plain object slot",
                         slot_names[i]);
            return -1;
        }
        offsets[i] = member->offset;
    }
    return 0;
}

static PyObject *
bind(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *event, *frozen, *atom_set, *freeze, *meta, *long_check, *clock_list, *count,
        *module_dict, *parsed;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!OOOOnO!OO!O:bind", &PyType_Type, &event, &PyType_Type,
                          &frozen, &atom_set, &freeze, &meta, &long_check, &limit,
                          &PyList_Type, &clock_list, &count, &PyDict_Type,
                          &module_dict, &parsed)) {
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)frozen, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "FrozenDict must be a dict subclass");
        return NULL;
    }
    if (PyList_GET_SIZE(clock_list) != 1 || !PyIter_Check(count)) {
        PyErr_SetString(PyExc_TypeError, "CLOCK must be a one-item list, counter an iterator");
        return NULL;
    }
    if (find_offsets((PyTypeObject *)event) < 0) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(atom_set, "atoms must be iterable");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_ATOMS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many atom types");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kind = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyType_Check(kind)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "atoms must be types");
            return NULL;
        }
        Py_INCREF(kind);
        Py_XDECREF(i < n_atoms ? (PyObject *)atoms[i] : NULL);
        atoms[i] = (PyTypeObject *)kind;
    }
    Py_DECREF(seq);
    n_atoms = n;
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(event));
    Py_XSETREF(frozen_dict, (PyTypeObject *)Py_NewRef(frozen));
    Py_XSETREF(freeze_nested, Py_NewRef(freeze));
    Py_XSETREF(metadata_dict, Py_NewRef(meta));
    Py_XSETREF(check_long_type, Py_NewRef(long_check));
    Py_XSETREF(last_clock, Py_NewRef(clock_list));
    Py_XSETREF(counter, Py_NewRef(count));
    PyObject *clock_read = PyDict_GetItemWithError(module_dict, time_ns_name); /* borrowed */
    if (clock_read == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "globals has no _time_ns");
        }
        return NULL;
    }
    Py_XSETREF(system_time_ns, Py_NewRef(clock_read));
    Py_XSETREF(globals, Py_NewRef(module_dict));
    Py_XSETREF(freeze_parsed_py, Py_NewRef(parsed));
    long_type = limit;
    Py_RETURN_NONE;
}

/* The literal tokens of a PatternIndex as a table C can probe without making a str per
 * token (making, hashing and freeing one was most of a lookup's cost): open addressing
 * over copies of the ASCII tokens (a token that is not ASCII never equals one of an ASCII
 * topic's). The hash is FNV-1a, not Python's: the table's contents are the registered
 * patterns' tokens, so a topic's tokens can only probe the clusters those leave (at most
 * half the slots are used).
 */
typedef struct {
    uint64_t hash;
    Py_ssize_t length; /* -1: an empty slot */
    const char *data;
} literal_slot;

typedef struct {
    size_t mask;
    literal_slot *slots;
    char *arena;
} literal_table;

static const char *literal_table_name = "pepperpy.event._cevent.literal_table";

static uint64_t
fnv1a(const char *data, Py_ssize_t length)
{
    uint64_t hash = 14695981039346656037ULL;
    for (Py_ssize_t i = 0; i < length; i++) {
        hash ^= (unsigned char)data[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

static void
literal_table_free(PyObject *capsule)
{
    literal_table *table = PyCapsule_GetPointer(capsule, literal_table_name);
    if (table != NULL) {
        PyMem_Free(table->slots);
        PyMem_Free(table->arena);
        PyMem_Free(table);
    }
}

static int
literal_known(const literal_table *table, const char *data, Py_ssize_t length)
{
    uint64_t hash = fnv1a(data, length);
    for (size_t i = (size_t)hash & table->mask;; i = (i + 1) & table->mask) {
        const literal_slot *slot = &table->slots[i];
        if (slot->length < 0) {
            return 0;
        }
        if (slot->hash == hash && slot->length == length &&
            memcmp(slot->data, data, (size_t)length) == 0) {
            return 1;
        }
    }
}

/* literal_table(literals) -> capsule: the table of the dict's str keys (see above) */
static PyObject *
make_literal_table(PyObject *Py_UNUSED(module), PyObject *literals)
{
    if (!PyDict_Check(literals)) {
        PyErr_SetString(PyExc_TypeError, "literal_table(): literals must be a dict");
        return NULL;
    }
    Py_ssize_t bytes = 0, pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(literals, &pos, &key, &value)) {
        if (PyUnicode_CheckExact(key) && PyUnicode_IS_COMPACT_ASCII(key)) {
            bytes += PyUnicode_GET_LENGTH(key);
        }
    }
    size_t size = 8;
    while (size < 2 * (size_t)PyDict_GET_SIZE(literals) + 2) {
        size *= 2;
    }
    literal_table *table = PyMem_Calloc(1, sizeof(literal_table));
    if (table == NULL) {
        return PyErr_NoMemory();
    }
    table->mask = size - 1;
    table->slots = PyMem_Calloc(size, sizeof(literal_slot));
    table->arena = PyMem_Malloc((size_t)bytes + 1);
    if (table->slots == NULL || table->arena == NULL) {
        PyMem_Free(table->slots);
        PyMem_Free(table->arena);
        PyMem_Free(table);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < size; i++) {
        table->slots[i].length = -1;
    }
    char *next = table->arena;
    pos = 0;
    while (PyDict_Next(literals, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || !PyUnicode_IS_COMPACT_ASCII(key)) {
            continue;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(key);
        memcpy(next, PyUnicode_1BYTE_DATA(key), (size_t)length);
        uint64_t hash = fnv1a(next, length);
        size_t i = (size_t)hash & table->mask;
        while (table->slots[i].length >= 0) {
            i = (i + 1) & table->mask;
        }
        table->slots[i].hash = hash;
        table->slots[i].length = length;
        table->slots[i].data = next;
        next += length;
    }
    PyObject *capsule = PyCapsule_New(table, literal_table_name, literal_table_free);
    if (capsule == NULL) {
        PyMem_Free(table->slots);
        PyMem_Free(table->arena);
        PyMem_Free(table);
    }
    return capsule;
}

/* The key PatternIndex keeps a topic's result under when a token of it is in no pattern
 * (an id): the topic with each such token left out, "w3..w7" for "w3.d0001f2.w7" (tokens
 * are never empty, so the key names the shape exactly: its split(".") is the shape).
 * None when every token is a literal (the by-topic cache serves those), and for anything
 * but an exact ASCII str of at most ``max_length`` characters and 64 tokens that is a
 * valid topic: the Python path handles those, and names what is wrong with an invalid
 * one. _patterns.py's own loop does the same for the rest
 * (tests/core/test_cevent_topics.py checks the two against each other). */
static PyObject *
shape_key_of(PyObject *topic, const literal_table *table, Py_ssize_t limit)
{
    if (!PyUnicode_CheckExact(topic) || !PyUnicode_IS_COMPACT_ASCII(topic)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(topic);
    if (length == 0 || length > limit) {
        Py_RETURN_NONE;
    }
    const char *text = (const char *)PyUnicode_1BYTE_DATA(topic);
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '.') {
            if (i == start) {
                Py_RETURN_NONE; /* an empty token */
            }
            start = i + 1;
        }
        else if (c <= ' ' || c >= 0x7f || c == '*' || c == '#') {
            /* what _tokens refuses: control characters, space, DEL, wildcards */
            Py_RETURN_NONE;
        }
    }
    if (start == length) {
        Py_RETURN_NONE; /* a trailing dot */
    }
    /* which tokens are literals: one bit each, for topics of up to 64 tokens (longer
     * ones, rare, take the Python path) */
    uint64_t known = 0;
    Py_ssize_t count = 0, kept = 0;
    int unknown = 0;
    start = 0;
    for (Py_ssize_t i = 0; i <= length; i++) {
        if (i < length && text[i] != '.') {
            continue;
        }
        if (count == 64) {
            Py_RETURN_NONE;
        }
        if (literal_known(table, text + start, i - start)) {
            known |= (uint64_t)1 << count;
            kept += i - start;
        }
        else {
            unknown = 1;
        }
        count++;
        start = i + 1;
    }
    if (!unknown) {
        Py_RETURN_NONE;
    }
    PyObject *key = PyUnicode_New(kept + count - 1, 127);
    if (key == NULL) {
        return NULL;
    }
    char *out = (char *)PyUnicode_1BYTE_DATA(key);
    Py_ssize_t token = 0;
    start = 0;
    for (Py_ssize_t i = 0; i <= length; i++) {
        if (i < length && text[i] != '.') {
            continue;
        }
        if (known & ((uint64_t)1 << token)) {
            memcpy(out, text + start, (size_t)(i - start));
            out += i - start;
        }
        if (i < length) {
            *out++ = '.';
        }
        token++;
        start = i + 1;
    }
    return key;
}

static literal_table *
literal_table_of(PyObject *capsule)
{
    if (!PyCapsule_IsValid(capsule, literal_table_name)) {
        PyErr_SetString(PyExc_TypeError, "shape_key(): table must come from literal_table()");
        return NULL;
    }
    return PyCapsule_GetPointer(capsule, literal_table_name);
}

/* shape_key(topic, table, max_length): see shape_key_of */
static PyObject *
shape_key(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "shape_key() takes 3 arguments");
        return NULL;
    }
    literal_table *table = literal_table_of(args[1]);
    if (table == NULL) {
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return shape_key_of(args[0], table, limit);
}

/* The trie walk of PatternIndex._lookup, over _patterns._Node objects (slots any,
 * children, entries, one; bound by bind_trie()). Nothing in it calls Python code: the
 * trie's dicts hold str tokens and int keys, so the walk sees the trie as it is when it
 * starts, as the Python walk does between two of its bytecodes.
 */
enum { N_ANY, N_CHILDREN, N_ENTRIES, N_ONE, N_NODE_SLOTS };
static const char *node_slot_names[N_NODE_SLOTS] = {"any", "children", "entries", "one"};
static PyTypeObject *node_type = NULL;
static Py_ssize_t node_offsets[N_NODE_SLOTS];

#define NODE_SLOT(node, i) (*(PyObject **)((char *)(node) + node_offsets[i]))

static PyObject *
bind_trie(PyObject *Py_UNUSED(module), PyObject *kind)
{
    if (!PyType_Check(kind)) {
        PyErr_SetString(PyExc_TypeError, "bind_trie() takes the node class");
        return NULL;
    }
    for (int i = 0; i < N_NODE_SLOTS; i++) {
        PyObject *descr = PyObject_GetAttrString(kind, node_slot_names[i]);
        if (descr == NULL) {
            return NULL;
        }
        if (!PyObject_TypeCheck(descr, &PyMemberDescr_Type)) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "node slot %s is not a member", node_slot_names[i]);
            return NULL;
        }
        node_offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
    }
    Py_XSETREF(node_type, (PyTypeObject *)Py_NewRef(kind));
    Py_RETURN_NONE;
}

/* A node's slot: a node or NULL for None (and for an unset slot). */
static int
node_child(PyObject *node, int slot, PyObject **child)
{
    PyObject *value = NODE_SLOT(node, slot);
    if (value == NULL || value == Py_None) {
        *child = NULL;
        return 0;
    }
    if (Py_TYPE(value) != node_type) {
        PyErr_SetString(PyExc_TypeError, "trie_lookup(): a node's child is not a node");
        return -1;
    }
    *child = value;
    return 0;
}

/* A node's dict slot (children, entries), or NULL with an error set. */
static PyObject *
node_dict(PyObject *node, int slot)
{
    PyObject *value = NODE_SLOT(node, slot);
    if (value == NULL || !PyDict_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "trie_lookup(): a node's children/entries are not a dict");
        return NULL;
    }
    return value;
}

typedef struct {
    PyObject *node;
    Py_ssize_t at;
} Branch;

typedef struct {
    Branch *items;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Branches;

static int
branches_push(Branches *stack, PyObject *node, Py_ssize_t at)
{
    if (stack->size == stack->capacity) {
        Py_ssize_t capacity = stack->capacity * 2;
        Branch *grown = PyMem_Realloc(stack->items, (size_t)capacity * sizeof(Branch));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        stack->items = grown;
        stack->capacity = capacity;
    }
    stack->items[stack->size].node = node;
    stack->items[stack->size].at = at;
    stack->size++;
    return 0;
}

/* The (node, position) pairs already queued for '#' nodes with children: open addressing
 * on a power-of-two table, kept at most half full. */
typedef struct {
    Branch *slots;
    Py_ssize_t used;
    Py_ssize_t capacity;
} Seen;

static size_t
seen_hash(PyObject *node, Py_ssize_t at)
{
    size_t h = (size_t)(uintptr_t)node >> 4;
    h ^= (size_t)at * (size_t)0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

/* 1 if (node, at) was not seen (and is now), 0 if it was, -1 on error. */
static int
seen_add(Seen *seen, PyObject *node, Py_ssize_t at)
{
    if ((seen->used + 1) * 2 > seen->capacity) {
        Py_ssize_t capacity = seen->capacity ? seen->capacity * 2 : 64;
        Branch *slots = PyMem_Calloc((size_t)capacity, sizeof(Branch));
        if (slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < seen->capacity; i++) {
            Branch old = seen->slots[i];
            if (old.node == NULL) {
                continue;
            }
            size_t j = seen_hash(old.node, old.at) & (size_t)(capacity - 1);
            while (slots[j].node != NULL) {
                j = (j + 1) & (size_t)(capacity - 1);
            }
            slots[j] = old;
        }
        PyMem_Free(seen->slots);
        seen->slots = slots;
        seen->capacity = capacity;
    }
    size_t mask = (size_t)(seen->capacity - 1);
    size_t j = seen_hash(node, at) & mask;
    while (seen->slots[j].node != NULL) {
        if (seen->slots[j].node == node && seen->slots[j].at == at) {
            return 0;
        }
        j = (j + 1) & mask;
    }
    seen->slots[j].node = node;
    seen->slots[j].at = at;
    seen->used++;
    return 1;
}

/* What the walk found: (registration key, item) pairs, the items borrowed from the
 * trie's entries dicts (nothing runs that could change them before the tuple is built). */
typedef struct {
    long long key;
    PyObject *item;
} Found;

typedef struct {
    Found *items;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Founds;

/* Add node's entries; -1 on error. */
static int
take_entries(Founds *found, PyObject *node)
{
    PyObject *entries = node_dict(node, N_ENTRIES);
    if (entries == NULL) {
        return -1;
    }
    Py_ssize_t count = PyDict_GET_SIZE(entries);
    if (count == 0) {
        return 0;
    }
    if (found->size + count > found->capacity) {
        Py_ssize_t capacity = (found->size + count) * 2;
        Found *grown = PyMem_Realloc(found->items, (size_t)capacity * sizeof(Found));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        found->items = grown;
        found->capacity = capacity;
    }
    Py_ssize_t position = 0;
    PyObject *key, *item;
    while (PyDict_Next(entries, &position, &key, &item)) {
        long long number = PyLong_AsLongLong(key);
        if (number == -1 && PyErr_Occurred()) {
            return -1;
        }
        found->items[found->size].key = number;
        found->items[found->size].item = item;
        found->size++;
    }
    return 0;
}

static int
by_key(const void *a, const void *b)
{
    long long x = ((const Found *)a)->key;
    long long y = ((const Found *)b)->key;
    return (x > y) - (x < y);
}

/* The items found, in registration order, each once (a '#' met at several positions
 * adds the same entries again). */
static PyObject *
in_registration_order(Founds *found)
{
    if (found->size == 0) {
        return Py_NewRef(empty_tuple);
    }
    Py_ssize_t count = found->size;
    if (count > 1) {
        if (count <= 64) {
            /* insertion sort: a few dozen keys, mostly in order node by node; glibc's
             * qsort costs twice the whole walk here */
            for (Py_ssize_t i = 1; i < count; i++) {
                Found moving = found->items[i];
                Py_ssize_t j = i;
                while (j > 0 && found->items[j - 1].key > moving.key) {
                    found->items[j] = found->items[j - 1];
                    j--;
                }
                found->items[j] = moving;
            }
        }
        else {
            qsort(found->items, (size_t)count, sizeof(Found), by_key);
        }
        Py_ssize_t kept = 1;
        for (Py_ssize_t i = 1; i < found->size; i++) {
            if (found->items[i].key != found->items[kept - 1].key) {
                found->items[kept++] = found->items[i];
            }
        }
        count = kept;
    }
    PyObject *result = PyTuple_New(count);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyTuple_SET_ITEM(result, i, Py_NewRef(found->items[i].item));
    }
    return result;
}

/* trie_lookup(root, tokens): the items whose patterns match the topic ``tokens``, in
 * registration order; _patterns.PatternIndex._lookup_py in C (tests compare the two). */
static PyObject *
trie_lookup(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "trie_lookup() takes 2 arguments");
        return NULL;
    }
    if (node_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "trie_lookup(): bind_trie() was not called");
        return NULL;
    }
    PyObject *root = args[0];
    PyObject *tokens = args[1];
    if (Py_TYPE(root) != node_type || !PyTuple_Check(tokens)) {
        PyErr_SetString(PyExc_TypeError, "trie_lookup() takes a node and a tuple of tokens");
        return NULL;
    }
    Py_ssize_t last = PyTuple_GET_SIZE(tokens);
    Founds found = {NULL, 0, 0};
    Branches stack = {PyMem_Malloc(16 * sizeof(Branch)), 0, 16};
    Seen seen = {NULL, 0, 0};
    if (stack.items == NULL) {
        return PyErr_NoMemory();
    }
    stack.items[stack.size++] = (Branch){root, 0};
    while (stack.size) {
        Branch branch = stack.items[--stack.size];
        PyObject *node = branch.node;
        Py_ssize_t at = branch.at;
        for (;;) {
            PyObject *rest;
            if (node_child(node, N_ANY, &rest) < 0) {
                goto error;
            }
            if (rest != NULL) {
                /* a trailing '#' matches whatever remains */
                if (take_entries(&found, rest) < 0) {
                    goto error;
                }
                PyObject *children = node_dict(rest, N_CHILDREN);
                PyObject *one_child, *any_child;
                if (children == NULL || node_child(rest, N_ONE, &one_child) < 0
                    || node_child(rest, N_ANY, &any_child) < 0) {
                    goto error;
                }
                if (PyDict_GET_SIZE(children) || one_child != NULL || any_child != NULL) {
                    for (Py_ssize_t k = at; k <= last; k++) {
                        int added = seen_add(&seen, rest, k);
                        if (added < 0 || (added && branches_push(&stack, rest, k) < 0)) {
                            goto error;
                        }
                    }
                }
            }
            if (at == last) {
                if (take_entries(&found, node) < 0) {
                    goto error;
                }
                break;
            }
            PyObject *one_child;
            if (node_child(node, N_ONE, &one_child) < 0) {
                goto error;
            }
            if (one_child != NULL && branches_push(&stack, one_child, at + 1) < 0) {
                goto error;
            }
            PyObject *children = node_dict(node, N_CHILDREN);
            if (children == NULL) {
                goto error;
            }
            PyObject *child = PyDict_GetItemWithError(children, PyTuple_GET_ITEM(tokens, at));
            if (child == NULL) {
                if (PyErr_Occurred()) {
                    goto error;
                }
                break;
            }
            if (Py_TYPE(child) != node_type) {
                PyErr_SetString(PyExc_TypeError, "trie_lookup(): a node's child is not a node");
                goto error;
            }
            node = child;
            at++;
        }
    }
    PyMem_Free(stack.items);
    PyMem_Free(seen.slots);
    PyObject *result = in_registration_order(&found);
    PyMem_Free(found.items);
    return result;
error:
    PyMem_Free(stack.items);
    PyMem_Free(seen.slots);
    PyMem_Free(found.items);
    return NULL;
}

static PyMethodDef methods[] = {
    {"make_event", (PyCFunction)(void (*)(void))make_event, METH_FASTCALL,
     "make_event(type, data, metadata) -> Event: _event.make_event, in C."},
    {"bind", bind, METH_VARARGS,
     "bind(Event, FrozenDict, atoms, freeze_nested, metadata_dict, check_long_type, "
     "LONG_TYPE, CLOCK, counter, globals, freeze_parsed): what the functions build with."},
    {"restore", (PyCFunction)(void (*)(void))restore, METH_FASTCALL,
     "restore(type, data, metadata, id, ts, version, extra) -> Event, slots as given."},
    {"freeze_parsed", freeze_parsed, METH_O,
     "freeze_parsed(value): _frozen.freeze_parsed, in C for flat objects and scalars."},
    {"literal_table", make_literal_table, METH_O,
     "literal_table(literals) -> capsule: the literal tokens, for shape_key."},
    {"shape_key", (PyCFunction)(void (*)(void))shape_key, METH_FASTCALL,
     "shape_key(topic, table, max_length): PatternIndex's key for a topic with ids."},
    {"bind_trie", bind_trie, METH_O, "bind_trie(_Node): the trie node class trie_lookup walks."},
    {"trie_lookup", (PyCFunction)(void (*)(void))trie_lookup, METH_FASTCALL,
     "trie_lookup(root, tokens) -> tuple: PatternIndex's trie walk, in registration order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cevent", "make_event in C (see _event.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__cevent(void)
{
    if (empty_tuple == NULL) {
        empty_tuple = PyTuple_New(0);
        one = PyLong_FromLong(1);
        time_ns_name = PyUnicode_InternFromString("_time_ns");
        empty_str = PyUnicode_FromStringAndSize(NULL, 0);
        if (empty_tuple == NULL || one == NULL || time_ns_name == NULL || empty_str == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module);
}
