/* Flow-log tuples into flows in C, measured necessary by bench/: splitting each tuple and running
   its flow's state in Python held the reading of flow logs to a third of its goal.

   batch(groups, v4, addresses, opened, denied, flow_type, idle) does what traffic._Reader.batch
   does in Python: it reads every tuple of the groups (traffic._Tuples: version, mac, nsg, rule,
   tuples) and moves each flow's state (B/C/E/D) in the open and denied tables, returning the flows
   the batch ended and the last tuple's time. It reads a strict subset of what the Python reader
   accepts (ASCII, plain digits of at most 18 places); on any other tuple it returns None before
   changing anything, and the Python reader reads the batch and names the bad tuple.
   expired(denied, ts, idle, flow_type) ends the denied flows idle too long, as the Python sweep does.

   The slots, states and flows made here hold numbers, strings and None only, and so are not tracked
   by the cyclic garbage collector: the open flows of a day cost the collector nothing.
   tests/test_traffic.py proves both readers give the same flows. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>

#include "_digits.h"

typedef struct {
    double ts;
    PyObject *src, *dst; /* strong references to the addresses' integers */
    long long counters[4];
    long sport, dport, proto, version;
    char inbound;
    char state; /* B C E D */
} Row;

static PyObject *INBOUND, *OUTBOUND, *ALLOW, *DENY, *STATE_B, *STATE_C, *STATE_E, *STATE_D;

/* Integers made once and shared, as most of a log's numbers and addresses recur: every number
   below 65536 (ports, protocols, most counters) as it is first met, and the last dotted quads met,
   4096 of them, by a hash of their value. Allocating each afresh cost a fifth of the reading. */
#define NUMBERS 65536
#define QUADS 4096
static PyObject *numbers[NUMBERS];
static struct { unsigned long value; PyObject *integer; } quads[QUADS];

static PyObject *
number(long long value)
{
    if (value < 0 || value >= NUMBERS)
        return PyLong_FromLongLong(value);
    if (numbers[value] == NULL && (numbers[value] = PyLong_FromLongLong(value)) == NULL)
        return NULL;
    return Py_NewRef(numbers[value]);
}

static PyObject *
quad_integer(unsigned long value)
{
    size_t slot = (size_t)((value * 2654435761UL) & 0xffffffffUL) >> 20;
    if (quads[slot].integer == NULL || quads[slot].value != value) {
        PyObject *integer = PyLong_FromUnsignedLong(value);
        if (integer == NULL)
            return NULL;
        Py_XSETREF(quads[slot].integer, integer);
        quads[slot].value = value;
    }
    return Py_NewRef(quads[slot].integer);
}

/* total + delta for a counter: in C while both fit, else as Python adds. */
static PyObject *
sum(PyObject *total, long long delta)
{
    if (PyLong_CheckExact(total)) {
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(total, &overflow);
        if (value == -1 && PyErr_Occurred())
            return NULL;
        if (!overflow && value >= 0 && value <= LLONG_MAX - delta)
            return number(value + delta);
    }
    PyObject *addend = PyLong_FromLongLong(delta);
    if (addend == NULL)
        return NULL;
    PyObject *result = PyNumber_Add(total, addend);
    Py_DECREF(addend);
    return result;
}

/* The value of 1 to 18 ASCII digits, else -1. */
static long long
digits(const char *s, Py_ssize_t n)
{
    long long value = 0;
    if (n < 1 || n > 18)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        value = value * 10 + (s[i] - '0');
    }
    return value;
}

/* A dotted quad as ipaddress reads one (four decimal octets, no leading zeros): 1 and its value,
   else 0. */
static int
ipv4(const char *s, Py_ssize_t n, unsigned long *value)
{
    Py_ssize_t i = 0;
    *value = 0;
    for (int octets = 0; octets < 4; octets++) {
        Py_ssize_t start = i;
        unsigned long octet = 0;
        if (octets > 0) {
            if (i >= n || s[i] != '.')
                return 0;
            start = ++i;
        }
        while (i < n && i - start < 3 && s[i] >= '0' && s[i] <= '9')
            octet = octet * 10 + (unsigned long)(s[i++] - '0');
        if (i == start || octet > 255 || (s[start] == '0' && i - start > 1))
            return 0;
        *value = *value << 8 | octet;
    }
    return i == n;
}

/* An address's version and integer: a dotted quad read here, any other text from the Addresses
   cache, which parses what it lacks. 1 when found, 0 when the text is no address, -1 on another
   error. */
static int
address(PyObject *addresses, const char *s, Py_ssize_t n, long *version, PyObject **value)
{
    unsigned long quad;
    if (ipv4(s, n, &quad)) {
        *version = 4;
        *value = quad_integer(quad);
        return *value == NULL ? -1 : 1;
    }
    PyObject *text = PyUnicode_FromStringAndSize(s, n);
    if (text == NULL)
        return -1;
    PyObject *found = PyDict_GetItemWithError(addresses, text);
    if (found != NULL) {
        Py_INCREF(found);
    } else if (PyErr_Occurred()) {
        Py_DECREF(text);
        return -1;
    } else {
        found = PyObject_GetItem(addresses, text); /* Addresses.__missing__ */
        if (found == NULL) {
            Py_DECREF(text);
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
    }
    Py_DECREF(text);
    int ok = 0;
    if (PyTuple_CheckExact(found) && PyTuple_GET_SIZE(found) == 2 && PyLong_CheckExact(PyTuple_GET_ITEM(found, 0))) {
        *version = PyLong_AsLong(PyTuple_GET_ITEM(found, 0));
        if (*version == -1 && PyErr_Occurred()) {
            Py_DECREF(found);
            return -1;
        }
        *value = PyTuple_GET_ITEM(found, 1);
        Py_INCREF(*value);
        ok = 1;
    }
    Py_DECREF(found);
    return ok;
}

/* One tuple into a row: 1 when read, 0 when outside the subset read here, -1 on error. */
static int
parse(PyObject *text, int v4, PyObject *addresses, Row *row)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text))
        return 0;
    const char *s = (const char *)PyUnicode_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text), start = 0;
    const char *f[13];
    Py_ssize_t n[13];
    int k = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        if (s[i] == ',') {
            if (k == 12)
                return 0;
            f[k] = s + start;
            n[k++] = i - start;
            start = i + 1;
        }
    }
    if (k != 12)
        return 0;
    f[12] = s + start;
    n[12] = length - start;

    long long time = digits(f[0], n[0]);
    if (time < 0 || time >= (1LL << 53)) /* exact as a double, as Python divides it */
        return 0;
    row->ts = v4 ? (double)time / 1000.0 : (double)time;
    long long sport = digits(f[3], n[3]), dport = digits(f[4], n[4]);
    if (sport < 0 || sport > 65535 || dport < 0 || dport > 65535)
        return 0;
    row->sport = (long)sport;
    row->dport = (long)dport;
    long long proto;
    if (!v4 && n[5] == 1 && (f[5][0] == 'T' || f[5][0] == 'U' || f[5][0] == 'I'))
        proto = f[5][0] == 'T' ? 6 : f[5][0] == 'U' ? 17 : 1;
    else
        proto = digits(f[5], n[5]);
    if (proto < 0 || proto > 255)
        return 0;
    if (n[6] != 1 || (f[6][0] != 'I' && f[6][0] != 'O'))
        return 0;
    row->inbound = f[6][0] == 'I';
    if (v4) {
        if (n[7] != 1 || !strchr("BCED", f[7][0]) || f[7][0] == '\0')
            return 0;
        row->state = f[7][0];
    } else {
        if (n[7] != 1 || (f[7][0] != 'A' && f[7][0] != 'D'))
            return 0;
        if (n[8] != 1 || (f[8][0] != 'B' && f[8][0] != 'C' && f[8][0] != 'E'))
            return 0;
        row->state = f[7][0] == 'D' ? 'D' : f[8][0];
    }
    int empty = !v4 && n[9] == 0 && n[10] == 0 && n[11] == 0 && n[12] == 0; /* v2's B tuples */
    for (int c = 0; c < 4; c++) {
        row->counters[c] = empty ? 0 : digits(f[9 + c], n[9 + c]);
        if (row->counters[c] < 0)
            return 0;
    }
    long dst_version;
    int found = address(addresses, f[1], n[1], &row->version, &row->src);
    if (found != 1)
        return found;
    found = address(addresses, f[2], n[2], &dst_version, &row->dst);
    if (found != 1) {
        Py_CLEAR(row->src);
        return found;
    }
    if (dst_version != row->version) {
        Py_CLEAR(row->src);
        Py_CLEAR(row->dst);
        return 0;
    }
    row->proto = (long)(proto == 1 && row->version == 6 ? 58 : proto);
    return 1;
}

/* A flow of flow_type (a NamedTuple of 13 fields) from its items, which it takes. */
static PyObject *
new_flow(PyTypeObject *flow_type, PyObject *items[13])
{
    PyObject *flow = flow_type->tp_alloc(flow_type, 13);
    for (int i = 0; i < 13; i++) {
        if (flow == NULL)
            Py_XDECREF(items[i]);
        else
            PyTuple_SET_ITEM(flow, i, items[i]);
    }
    if (flow != NULL) {
        PyObject_GC_UnTrack(items[2]);
        PyObject_GC_UnTrack(flow);
    }
    return flow;
}

static int
all_set(PyObject *items[13])
{
    for (int i = 0; i < 13; i++)
        if (items[i] == NULL) {
            for (int j = 0; j < 13; j++)
                Py_XDECREF(items[j]);
            return 0;
        }
    return 1;
}

/* An open flow's state as the Python reader keeps it: first, last, four counters, began, logged,
   nsg, rule. */
static PyObject *
checked_state(PyObject *state)
{
    if (!PyList_CheckExact(state) || PyList_GET_SIZE(state) != 10) {
        PyErr_SetString(PyExc_TypeError, "a flow's state is a list of 10 items");
        return NULL;
    }
    return state;
}

/* The flow of a slot (mac, direction, 5-tuple) and its state, ended. */
static PyObject *
ended_flow(PyTypeObject *flow_type, PyObject *slot, PyObject *state)
{
    PyObject *items[13];
    items[0] = Py_NewRef(PyTuple_GET_ITEM(slot, 0));
    items[1] = Py_NewRef(PyTuple_GET_ITEM(slot, 1));
    items[2] = PyTuple_GetSlice(slot, 2, 8);
    for (int i = 0; i < 10; i++)
        items[3 + i] = Py_NewRef(PyList_GET_ITEM(state, i));
    if (!all_set(items))
        return NULL;
    return new_flow(flow_type, items);
}

static int
append_new(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return -1;
    int result = PyList_Append(list, item);
    Py_DECREF(item);
    return result;
}

/* state[index] += delta */
static int
add_to(PyObject *state, Py_ssize_t index, long long delta)
{
    PyObject *total = sum(PyList_GET_ITEM(state, index), delta);
    if (total == NULL)
        return -1;
    return PyList_SetItem(state, index, total);
}

/* Moves the flow of one row on; -1 on error. */
static int
advance(Row *row, PyObject *mac, PyObject *nsg, PyObject *rule, PyObject *opened, PyObject *denied,
        PyTypeObject *flow_type, double idle, PyObject *ended)
{
    int result = -1;
    PyObject *ts = NULL, *slot = NULL;
    PyObject *direction = row->inbound ? INBOUND : OUTBOUND;
    PyObject *state = row->state == 'B' ? STATE_B : row->state == 'C' ? STATE_C
                      : row->state == 'E' ? STATE_E : STATE_D;
    ts = PyFloat_FromDouble(row->ts);
    if (ts == NULL)
        goto done;
    slot = PyTuple_New(8);
    if (slot == NULL)
        goto done;
    PyTuple_SET_ITEM(slot, 0, Py_NewRef(mac));
    PyTuple_SET_ITEM(slot, 1, Py_NewRef(direction));
    PyTuple_SET_ITEM(slot, 2, number(row->proto));
    PyTuple_SET_ITEM(slot, 3, number(row->version));
    PyTuple_SET_ITEM(slot, 4, Py_NewRef(row->src));
    PyTuple_SET_ITEM(slot, 5, number(row->sport));
    PyTuple_SET_ITEM(slot, 6, Py_NewRef(row->dst));
    PyTuple_SET_ITEM(slot, 7, number(row->dport));
    for (int i = 2; i < 8; i++)
        if (PyTuple_GET_ITEM(slot, i) == NULL)
            goto done;
    PyObject_GC_UnTrack(slot);

    PyObject *table = row->state == 'D' ? denied : opened;
    PyObject *flow = PyDict_GetItemWithError(table, slot); /* borrowed */
    if (flow == NULL && PyErr_Occurred())
        goto done;
    if (flow != NULL && checked_state(flow) == NULL)
        goto done;
    if (row->state == 'E') {
        PyObject *items[13];
        items[0] = Py_NewRef(mac);
        items[1] = Py_NewRef(direction);
        items[2] = PyTuple_GetSlice(slot, 2, 8);
        items[4] = Py_NewRef(ts);
        if (flow == NULL) {
            items[3] = Py_NewRef(ts);
            for (int c = 0; c < 4; c++)
                items[5 + c] = number(row->counters[c]);
            items[9] = Py_NewRef(STATE_E);
            items[10] = Py_NewRef(ALLOW);
            items[11] = Py_NewRef(nsg);
            items[12] = Py_NewRef(rule);
        } else {
            items[3] = Py_NewRef(PyList_GET_ITEM(flow, 0));
            for (int c = 0; c < 4; c++)
                items[5 + c] = sum(PyList_GET_ITEM(flow, 2 + c), row->counters[c]);
            for (int i = 6; i < 10; i++)
                items[3 + i] = Py_NewRef(PyList_GET_ITEM(flow, i));
        }
        if (!all_set(items))
            goto done;
        if (flow != NULL && PyDict_DelItem(table, slot) < 0) {
            for (int i = 0; i < 13; i++)
                Py_DECREF(items[i]);
            goto done;
        }
        if (append_new(ended, new_flow(flow_type, items)) < 0)
            goto done;
        result = 0;
        goto done;
    }
    if (flow != NULL && row->state != 'C') { /* a B reopens its slot; a D after idling is another flow */
        int ends = row->state == 'B';
        if (!ends) {
            double last = PyFloat_AsDouble(PyList_GET_ITEM(flow, 1));
            if (last == -1.0 && PyErr_Occurred())
                goto done;
            ends = row->ts - last > idle;
        }
        if (ends) {
            if (append_new(ended, ended_flow(flow_type, slot, flow)) < 0 || PyDict_DelItem(table, slot) < 0)
                goto done;
            flow = NULL;
        }
    }
    if (flow == NULL) {
        PyObject *fresh = PyList_New(10);
        if (fresh == NULL)
            goto done;
        PyList_SET_ITEM(fresh, 0, Py_NewRef(ts));
        PyList_SET_ITEM(fresh, 1, Py_NewRef(ts));
        for (int c = 0; c < 4; c++)
            PyList_SET_ITEM(fresh, 2 + c, number(row->counters[c]));
        PyList_SET_ITEM(fresh, 6, Py_NewRef(state));
        PyList_SET_ITEM(fresh, 7, Py_NewRef(row->state == 'D' ? DENY : ALLOW));
        PyList_SET_ITEM(fresh, 8, Py_NewRef(nsg));
        PyList_SET_ITEM(fresh, 9, Py_NewRef(rule));
        for (int c = 0; c < 4; c++)
            if (PyList_GET_ITEM(fresh, 2 + c) == NULL) {
                Py_DECREF(fresh);
                goto done;
            }
        PyObject_GC_UnTrack(fresh);
        int set = PyDict_SetItem(table, slot, fresh);
        Py_DECREF(fresh);
        if (set < 0)
            goto done;
    } else {
        if (PyList_SetItem(flow, 1, Py_NewRef(ts)) < 0)
            goto done;
        for (int c = 0; c < 4; c++)
            if (add_to(flow, 2 + c, row->counters[c]) < 0)
                goto done;
    }
    result = 0;
done:
    Py_XDECREF(ts);
    Py_XDECREF(slot);
    return result;
}

/* The group's items (mac, nsg, rule, tuples), borrowed, or 0 when it is no traffic._Tuples. */
static int
group_items(PyObject *group, PyObject **mac, PyObject **nsg, PyObject **rule, PyObject **tuples)
{
    if (!PyTuple_Check(group) || PyTuple_GET_SIZE(group) != 5 || !PyList_Check(PyTuple_GET_ITEM(group, 4))) {
        PyErr_SetString(PyExc_TypeError, "groups: expected (version, mac, nsg, rule, list of tuples) each");
        return 0;
    }
    *mac = PyTuple_GET_ITEM(group, 1);
    *nsg = PyTuple_GET_ITEM(group, 2);
    *rule = PyTuple_GET_ITEM(group, 3);
    *tuples = PyTuple_GET_ITEM(group, 4);
    return 1;
}

static PyObject *
batch(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *groups, *addresses, *opened, *denied;
    PyTypeObject *flow_type;
    int v4;
    double idle;
    if (!PyArg_ParseTuple(args, "O!pO!O!O!O!d", &PyList_Type, &groups, &v4, &PyDict_Type, &addresses,
                          &PyDict_Type, &opened, &PyDict_Type, &denied, &PyType_Type, &flow_type, &idle))
        return NULL;
    if (!PyType_IsSubtype(flow_type, &PyTuple_Type) || flow_type->tp_basicsize != PyTuple_Type.tp_basicsize
        || flow_type->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_SetString(PyExc_TypeError, "flow_type: expected a NamedTuple");
        return NULL;
    }
    Py_ssize_t count = 0;
    PyObject *mac, *nsg, *rule, *tuples;
    for (Py_ssize_t g = 0; g < PyList_GET_SIZE(groups); g++) {
        if (!group_items(PyList_GET_ITEM(groups, g), &mac, &nsg, &rule, &tuples))
            return NULL;
        count += PyList_GET_SIZE(tuples);
    }
    Row *rows = PyMem_Calloc(count ? count : 1, sizeof(Row));
    if (rows == NULL)
        return PyErr_NoMemory();
    PyObject *result = NULL, *ended = NULL;
    Py_ssize_t read = 0;
    /* Every tuple is read before any flow moves, so that a tuple read in Python changes nothing here. */
    for (Py_ssize_t g = 0; g < PyList_GET_SIZE(groups); g++) {
        if (!group_items(PyList_GET_ITEM(groups, g), &mac, &nsg, &rule, &tuples))
            goto done;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tuples); i++) {
            if (read == count) { /* a list grew while its addresses were parsed */
                result = Py_NewRef(Py_None);
                goto done;
            }
            PyObject *text = Py_NewRef(PyList_GET_ITEM(tuples, i));
            int found = parse(text, v4, addresses, &rows[read]);
            Py_DECREF(text);
            if (found < 0)
                goto done;
            if (found == 0) {
                result = Py_NewRef(Py_None);
                goto done;
            }
            read++;
        }
    }
    if (read != count) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    ended = PyList_New(0);
    if (ended == NULL)
        goto done;
    Py_ssize_t r = 0;
    for (Py_ssize_t g = 0; g < PyList_GET_SIZE(groups) && r < count; g++) {
        PyObject *group = Py_NewRef(PyList_GET_ITEM(groups, g));
        if (!group_items(group, &mac, &nsg, &rule, &tuples)) {
            Py_DECREF(group);
            goto done;
        }
        Py_ssize_t end = r + PyList_GET_SIZE(tuples);
        for (; r < end && r < count; r++)
            if (advance(&rows[r], mac, nsg, rule, opened, denied, flow_type, idle, ended) < 0) {
                Py_DECREF(group);
                goto done;
            }
        Py_DECREF(group);
    }
    if (count)
        result = Py_BuildValue("(Od)", ended, rows[count - 1].ts);
    else
        result = Py_BuildValue("(OO)", ended, Py_None);
done:
    Py_XDECREF(ended);
    for (Py_ssize_t i = 0; i < read; i++) {
        Py_XDECREF(rows[i].src);
        Py_XDECREF(rows[i].dst);
    }
    PyMem_Free(rows);
    return result;
}

/* expired(denied, ts, idle, flow_type): the denied flows idle longer than idle at ts, ended and
   taken out of the table, in the table's order. */
static PyObject *
expired(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *denied, *key, *value;
    PyTypeObject *flow_type;
    double ts, idle;
    if (!PyArg_ParseTuple(args, "O!ddO!", &PyDict_Type, &denied, &ts, &idle, &PyType_Type, &flow_type))
        return NULL;
    if (!PyType_IsSubtype(flow_type, &PyTuple_Type) || flow_type->tp_basicsize != PyTuple_Type.tp_basicsize
        || flow_type->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_SetString(PyExc_TypeError, "flow_type: expected a NamedTuple");
        return NULL;
    }
    PyObject *slots = PyList_New(0), *ended = PyList_New(0);
    if (slots == NULL || ended == NULL)
        goto error;
    Py_ssize_t position = 0;
    while (PyDict_Next(denied, &position, &key, &value)) {
        if (checked_state(value) == NULL || !PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 8) {
            PyErr_SetString(PyExc_TypeError, "denied: expected flows by (mac, direction, 5-tuple)");
            goto error;
        }
        double last = PyFloat_AsDouble(PyList_GET_ITEM(value, 1));
        if (last == -1.0 && PyErr_Occurred())
            goto error;
        if (ts - last > idle && PyList_Append(slots, key) < 0)
            goto error;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(slots); i++) {
        key = PyList_GET_ITEM(slots, i);
        value = PyDict_GetItemWithError(denied, key);
        if (value == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "denied changed while its flows expired");
            goto error;
        }
        if (append_new(ended, ended_flow(flow_type, key, value)) < 0 || PyDict_DelItem(denied, key) < 0)
            goto error;
    }
    Py_DECREF(slots);
    return ended;
error:
    Py_XDECREF(slots);
    Py_XDECREF(ended);
    return NULL;
}

/* -- tuple_texts: a closed minute's tuples as flow logs write them ---------------------------- */

static char *
put_signed(char *out, long long v)
{
    if (v < 0) {
        *out++ = '-';
        return put_number(out, 0ULL - (unsigned long long)v);
    }
    return put_number(out, (unsigned long long)v);
}

/* A long long from a Python int, or 0 with *bad set (not an int, or too large). */
static long long
integer_of(PyObject *value, int *bad)
{
    if (!PyLong_CheckExact(value)) {
        *bad = 1;
        return 0;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        *bad = 1;
    }
    return v;
}

/* The text of one flowlog._Tuple (ts, nsg, rule, nic, proto, version, src, sport, dst, dport, direction,
   state, counters), as flowlog.nsg_tuple or vnet_tuple writes it, or NULL without an exception for one
   this does not write (IPv6, a one-letter field that is not, a number beyond 64 bits): Python does. */
static PyObject *
tuple_text(PyObject *t, int vnet)
{
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 13 || !PyFloat_CheckExact(PyTuple_GET_ITEM(t, 0)))
        return NULL;
    int bad = 0;
    double ts = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(t, 0));
    long long proto = integer_of(PyTuple_GET_ITEM(t, 4), &bad), version = integer_of(PyTuple_GET_ITEM(t, 5), &bad);
    long long src = integer_of(PyTuple_GET_ITEM(t, 6), &bad), sport = integer_of(PyTuple_GET_ITEM(t, 7), &bad);
    long long dst = integer_of(PyTuple_GET_ITEM(t, 8), &bad), dport = integer_of(PyTuple_GET_ITEM(t, 9), &bad);
    PyObject *direction = PyTuple_GET_ITEM(t, 10), *state = PyTuple_GET_ITEM(t, 11), *counters = PyTuple_GET_ITEM(t, 12);
    double when = vnet ? ts * 1000.0 : ts;
    if (bad || version != 4 || src < 0 || src > 0xFFFFFFFFLL || dst < 0 || dst > 0xFFFFFFFFLL ||
            !(when >= 0.0 && when < 9.2e18) || (!vnet && proto != 6 && proto != 17) ||
            !PyUnicode_CheckExact(direction) || PyUnicode_GET_LENGTH(direction) != 1 || !PyUnicode_IS_ASCII(direction) ||
            !PyUnicode_CheckExact(state) || PyUnicode_GET_LENGTH(state) != 1 || !PyUnicode_IS_ASCII(state) ||
            (counters != Py_None && (!PyTuple_CheckExact(counters) || PyTuple_GET_SIZE(counters) != 4)))
        return NULL;
    long long count[4] = {0, 0, 0, 0};
    for (int i = 0; counters != Py_None && i < 4; i++)
        count[i] = integer_of(PyTuple_GET_ITEM(counters, i), &bad);
    if (bad)
        return NULL;
    char text[256], *out = put_number(text, (unsigned long long)when);
    long long ends[2] = {src, dst};
    for (int i = 0; i < 2; i++) {
        *out++ = ',';
        for (int shift = 24; shift >= 0; shift -= 8) {
            out = put_number(out, (unsigned long long)(ends[i] >> shift & 255));
            if (shift)
                *out++ = '.';
        }
    }
    int ported = proto == 6 || proto == 17;
    *out++ = ',';
    out = put_signed(out, ported ? sport : 0);
    *out++ = ',';
    out = put_signed(out, ported ? dport : 0);
    *out++ = ',';
    char s = (char)PyUnicode_1BYTE_DATA(state)[0];
    if (vnet)
        out = put_signed(out, proto);
    else
        *out++ = proto == 6 ? 'T' : 'U';
    *out++ = ',';
    *out++ = (char)PyUnicode_1BYTE_DATA(direction)[0];
    *out++ = ',';
    if (vnet) {
        *out++ = s;
        memcpy(out, ",NX", 3);
        out += 3;
    } else {
        *out++ = s == 'D' ? 'D' : 'A';
        *out++ = ',';
        *out++ = s == 'D' ? 'B' : s;
    }
    for (int i = 0; i < 4; i++) {
        *out++ = ',';
        if (counters != Py_None || vnet)
            out = put_signed(out, count[i]);
    }
    return PyUnicode_FromStringAndSize(text, out - text);
}

/* One part of a group's key: the tuple's field at `at`, through `through` (a callable) where one is given. */
typedef struct {
    Py_ssize_t at;
    PyObject *through; /* borrowed from the fields argument, or NULL */
} KeyField;

/* group_texts(tuples, vnet, fields, logged, write): each tuple's text, as flowlog.nsg_tuple or vnet_tuple
   writes it (by `write(tuple)` where tuple_text does not), in a list per key, keys and texts in the order
   met. A key is the tuple's values at `fields`, each an index or (index, callable) for the callable's
   value of it; a tuple whose protocol is not in `logged` (None: every one) is left out. Consecutive tuples
   mostly share a key: one whose key fields are the very objects of the previous one's joins its list
   without a lookup. Grouping, not writing, was most of a minute's cost in Python (bench/). */
static PyObject *
group_texts(PyObject *self, PyObject *args)
{
    PyObject *tuples, *fields, *logged, *write;
    int vnet;
    if (!PyArg_ParseTuple(args, "O!pO!OO", &PyList_Type, &tuples, &vnet, &PyTuple_Type, &fields, &logged, &write))
        return NULL;
    Py_ssize_t n_fields = PyTuple_GET_SIZE(fields);
    KeyField key_fields[4];
    if (n_fields < 1 || n_fields > 4 || !PyCallable_Check(write) || (logged != Py_None && !PyDict_Check(logged))) {
        PyErr_SetString(PyExc_TypeError, "group_texts(tuples, vnet, fields (1 to 4), logged dict or None, write callable)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n_fields; i++) {
        PyObject *field = PyTuple_GET_ITEM(fields, i), *at = field;
        key_fields[i].through = NULL;
        if (PyTuple_Check(field) && PyTuple_GET_SIZE(field) == 2 && PyCallable_Check(PyTuple_GET_ITEM(field, 1))) {
            at = PyTuple_GET_ITEM(field, 0);
            key_fields[i].through = PyTuple_GET_ITEM(field, 1);
        }
        key_fields[i].at = PyLong_Check(at) ? PyLong_AsSsize_t(at) : -1;
        if (key_fields[i].at < 0 || key_fields[i].at >= 13) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "group_texts: a key field is an index of a tuple's 13, or (index, callable)");
            return NULL;
        }
    }
    PyObject *groups = PyDict_New(), *texts = NULL, *last = NULL; /* last: the previous tuple's key fields */
    PyObject *t = NULL;
    if (groups == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tuples); i++) {
        Py_XSETREF(t, Py_NewRef(PyList_GET_ITEM(tuples, i)));
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 13) {
            PyErr_SetString(PyExc_TypeError, "group_texts: a flow-log tuple has 13 fields");
            goto error;
        }
        if (logged != Py_None) {
            int kept = PyDict_Contains(logged, PyTuple_GET_ITEM(t, 4));
            if (kept < 0)
                goto error;
            if (!kept)
                continue;
        }
        int same = last != NULL;
        for (Py_ssize_t k = 0; same && k < n_fields; k++)
            same = PyTuple_GET_ITEM(t, key_fields[k].at) == PyTuple_GET_ITEM(last, k);
        if (!same) {
            PyObject *key = PyTuple_New(n_fields);
            Py_XSETREF(last, PyTuple_New(n_fields));
            if (key == NULL || last == NULL) {
                Py_XDECREF(key);
                goto error;
            }
            for (Py_ssize_t k = 0; k < n_fields; k++) {
                PyObject *value = PyTuple_GET_ITEM(t, key_fields[k].at);
                PyTuple_SET_ITEM(last, k, Py_NewRef(value));
                PyTuple_SET_ITEM(key, k, key_fields[k].through != NULL ? PyObject_CallOneArg(key_fields[k].through, value)
                                                                      : Py_NewRef(value));
                if (PyTuple_GET_ITEM(key, k) == NULL) {
                    Py_DECREF(key);
                    Py_CLEAR(last); /* not a key met: the next tuple looks its own up */
                    goto error;
                }
            }
            Py_XSETREF(texts, Py_XNewRef(PyDict_GetItemWithError(groups, key)));
            if (texts == NULL && !PyErr_Occurred() && (texts = PyList_New(0)) != NULL &&
                    PyDict_SetItem(groups, key, texts) < 0)
                Py_CLEAR(texts);
            Py_DECREF(key);
            if (texts == NULL)
                goto error;
        }
        PyObject *text = tuple_text(t, vnet);
        if (text == NULL && !PyErr_Occurred())
            text = PyObject_CallOneArg(write, t);
        int appended = text != NULL ? PyList_Append(texts, text) : -1;
        Py_XDECREF(text);
        if (appended < 0)
            goto error;
    }
    Py_XDECREF(t);
    Py_XDECREF(texts);
    Py_XDECREF(last);
    return groups;
error:
    Py_XDECREF(t);
    Py_XDECREF(texts);
    Py_XDECREF(last);
    Py_DECREF(groups);
    return NULL;
}

static PyMethodDef methods[] = {
    {"group_texts", group_texts, METH_VARARGS,
     "group_texts(tuples, vnet, fields, logged, write) -> {key: [text of each of its flow-log tuples]}"},
    {"batch", batch, METH_VARARGS,
     "batch(groups, v4, addresses, opened, denied, flow_type, idle) -> (ended flows, last time) or None"},
    {"expired", expired, METH_VARARGS, "expired(denied, ts, idle, flow_type) -> the denied flows idle too long"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_flowlogs", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__flowlogs(void)
{
    INBOUND = PyUnicode_InternFromString("Inbound");
    OUTBOUND = PyUnicode_InternFromString("Outbound");
    ALLOW = PyUnicode_InternFromString("Allow");
    DENY = PyUnicode_InternFromString("Deny");
    STATE_B = PyUnicode_InternFromString("B");
    STATE_C = PyUnicode_InternFromString("C");
    STATE_E = PyUnicode_InternFromString("E");
    STATE_D = PyUnicode_InternFromString("D");
    if (!INBOUND || !OUTBOUND || !ALLOW || !DENY || !STATE_B || !STATE_C || !STATE_E || !STATE_D)
        return NULL;
    return PyModule_Create(&module);
}
