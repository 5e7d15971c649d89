/* The per-packet hot path in C, measured necessary by bench/: pure Python could not reach its goals.

   Record: conntrack.FlowRecord with its fields inline, and not tracked by the cyclic garbage
   collector (a record never refers back to anything that refers to it), so half a million live
   flows cost the collector nothing.

   FastPath.process(frame, ts): the common frame (Ethernet, IPv4 without options or fragments,
   TCP or UDP) of a flow in the dataplane's recent-flow table passes here without Python code; the
   first packet of a flow from outside to a NIC goes straight to Dataplane._new_at_nic; anything
   else comes back decoded (a Packet) or as None (the Python decoder's case).
   FastPath.pass_frames(frames, until, limit): the replay's loop, when it writes nothing per packet:
   the frames of recent flows pass in C, and the first other frame goes back to Dataplane.process.
   tests/test_pipeline_fast_path.py proves both paths decide every packet alike;
   tests/test_fastpath_safety.py that misuse raises and that a Dataplane and its FastPath are freed. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *key;
    PyObject *state;
    PyObject *outcome;
    PyObject *nat;
    double expires;
    long long bucket;
    long long packets_out, bytes_out, packets_in, bytes_in;
    char reversed;
} Record;

static int
Record_init(Record *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"key", "reversed_", "state", "expires", "outcome", "nat", NULL};
    PyObject *key, *state, *outcome, *nat = Py_None;
    int reversed;
    double expires;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OpOdO|O", names, &key, &reversed, &state, &expires,
                                     &outcome, &nat))
        return -1;
    Py_INCREF(key); Py_XSETREF(self->key, key);
    Py_INCREF(state); Py_XSETREF(self->state, state);
    Py_INCREF(outcome); Py_XSETREF(self->outcome, outcome);
    Py_INCREF(nat); Py_XSETREF(self->nat, nat);
    self->reversed = (char)reversed;
    self->expires = expires;
    self->bucket = 0;
    self->packets_out = self->bytes_out = self->packets_in = self->bytes_in = 0;
    return 0;
}

/* Record(key, reversed_, state, expires, outcome[, nat]) without parsing arguments: FlowTable.add
   makes one per new flow. */
static PyObject *
Record_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 5 || nargs > 6) {
        PyObject *tuple = PyTuple_New(nargs);
        if (tuple == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < nargs; i++)
            PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
        PyObject *kwargs = NULL;
        if (kwnames != NULL) {
            kwargs = PyDict_New();
            for (Py_ssize_t i = 0; kwargs != NULL && i < PyTuple_GET_SIZE(kwnames); i++) {
                if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0)
                    Py_CLEAR(kwargs);
            }
            if (kwargs == NULL) {
                Py_DECREF(tuple);
                return NULL;
            }
        }
        PyObject *self = PyType_GenericNew((PyTypeObject *)type, tuple, kwargs);
        if (self != NULL && Record_init((Record *)self, tuple, kwargs) < 0)
            Py_CLEAR(self);
        Py_DECREF(tuple);
        Py_XDECREF(kwargs);
        return self;
    }
    double expires = PyFloat_AsDouble(args[3]);
    if (expires == -1.0 && PyErr_Occurred())
        return NULL;
    int reversed = PyObject_IsTrue(args[1]);
    if (reversed < 0)
        return NULL;
    Record *self = (Record *)((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    if (self == NULL)
        return NULL;
    self->key = Py_NewRef(args[0]);
    self->reversed = (char)reversed;
    self->state = Py_NewRef(args[2]);
    self->expires = expires;
    self->outcome = Py_NewRef(args[4]);
    self->nat = Py_NewRef(nargs == 6 ? args[5] : Py_None);
    return (PyObject *)self;
}

static void
Record_dealloc(Record *self)
{
    Py_XDECREF(self->key);
    Py_XDECREF(self->state);
    Py_XDECREF(self->outcome);
    Py_XDECREF(self->nat);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Record_initiator(Record *self, void *closure)
{
    if (!self->reversed || self->key == NULL || !PyTuple_Check(self->key) || PyTuple_GET_SIZE(self->key) != 6) {
        Py_XINCREF(self->key);
        return self->key ? self->key : Py_NewRef(Py_None);
    }
    PyObject *k = self->key;
    return PyTuple_Pack(6, PyTuple_GET_ITEM(k, 0), PyTuple_GET_ITEM(k, 1), PyTuple_GET_ITEM(k, 4),
                        PyTuple_GET_ITEM(k, 5), PyTuple_GET_ITEM(k, 2), PyTuple_GET_ITEM(k, 3));
}

static PyObject *
Record_repr(Record *self)
{
    PyObject *initiator = Record_initiator(self, NULL);
    PyObject *expires = PyFloat_FromDouble(self->expires);
    PyObject *text = NULL;
    if (initiator != NULL && expires != NULL)
        text = PyUnicode_FromFormat("FlowRecord(%R, %S, expires=%R)", initiator, self->state ? self->state : Py_None,
                                    expires);
    Py_XDECREF(initiator);
    Py_XDECREF(expires);
    return text;
}

/* The object fields: readable and settable, never deleted (the C path reads them without a NULL test). */
typedef struct {
    const char *name;
    size_t offset;
} Field;

static Field record_fields[] = {
    {"key", offsetof(Record, key)}, {"state", offsetof(Record, state)},
    {"outcome", offsetof(Record, outcome)}, {"nat", offsetof(Record, nat)},
};

static PyObject *
Record_get_field(Record *self, Field *field)
{
    PyObject *value = *(PyObject **)((char *)self + field->offset);
    return Py_NewRef(value != NULL ? value : Py_None);
}

static int
Record_set_field(Record *self, PyObject *value, Field *field)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "a flow record's %s cannot be deleted", field->name);
        return -1;
    }
    Py_XSETREF(*(PyObject **)((char *)self + field->offset), Py_NewRef(value));
    return 0;
}

static PyGetSetDef Record_getset[] = {
    {"initiator", (getter)Record_initiator, NULL, "the 5-tuple as the flow's first packet carried it", NULL},
    {"key", (getter)Record_get_field, (setter)Record_set_field, NULL, &record_fields[0]},
    {"state", (getter)Record_get_field, (setter)Record_set_field, NULL, &record_fields[1]},
    {"outcome", (getter)Record_get_field, (setter)Record_set_field, NULL, &record_fields[2]},
    {"nat", (getter)Record_get_field, (setter)Record_set_field, NULL, &record_fields[3]},
    {NULL},
};

static PyMemberDef Record_members[] = {
    {"expires", T_DOUBLE, offsetof(Record, expires), 0, NULL},
    {"bucket", T_LONGLONG, offsetof(Record, bucket), 0, NULL},
    {"packets_out", T_LONGLONG, offsetof(Record, packets_out), 0, NULL},
    {"bytes_out", T_LONGLONG, offsetof(Record, bytes_out), 0, NULL},
    {"packets_in", T_LONGLONG, offsetof(Record, packets_in), 0, NULL},
    {"bytes_in", T_LONGLONG, offsetof(Record, bytes_in), 0, NULL},
    {"reversed", T_BOOL, offsetof(Record, reversed), 0, NULL},
    {NULL},
};

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataplane.conntrack.FlowRecord",
    .tp_basicsize = sizeof(Record),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One flow at one NIC (conntrack.FlowRecord), its fields inline and invisible to the cyclic GC.",
    .tp_repr = (reprfunc)Record_repr,
    .tp_getset = Record_getset,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Record_init,
    .tp_dealloc = (destructor)Record_dealloc,
    .tp_members = Record_members,
};

/* -- FastPath ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *recent;      /* dict: key → (legs, translated, plan, head) */
    PyObject *moves;       /* tuple of 256 dicts: state → (next when the responder sent, when the initiator sent) */
    PyObject *closed;      /* TcpState.CLOSED */
    PyObject *packet_type; /* decode.Packet */
    PyObject *verdict_type;/* pipeline.Verdict */
    PyObject *nics;        /* dict: IPv4 address → (NIC, its table's dict of records) */
    PyObject *new_at_nic;  /* Dataplane._new_at_nic(packet, ts, key, nic, Direction.INBOUND, False) */
    PyObject *inbound;     /* Direction.INBOUND */
    long long packets;     /* packets taken here: Dataplane.stats folds them in */
    long long allowed;     /* of which passed here as packets of recent flows */
    double next_sweep;     /* the dataplane sweeps its tables when a packet reaches this time */
} FastPath;

static PyObject *s_value, *s_reschedule, *s_allow, *s_flow, *s_empty, *s_empty_tuple;
static PyObject *small[8];

/* The C path fills Packet and Verdict tuples by position, so the types must be tuples with these
   fields: another type would get values in the wrong places, or overflow its memory. */
static const char *packet_fields[] = {"version", "proto", "src", "dst", "sport", "dport", "tcp_flags", "icmp_type",
                                      "icmp_code", "icmp_id", "length", "ip_id", "frag_offset", "more_fragments",
                                      "fragmented", "vlans", "inner", NULL};
static const char *verdict_fields[] = {"ts", "decision", "reason", "direction", "nic", "nsg", "rule", "state",
                                       "packet", "translated", "detail", "evaluations", NULL};

static int
check_fields(PyObject *type, const char *argument, const char **expected)
{
    if (!PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple subclass, not %R", argument, type);
        return -1;
    }
    Py_ssize_t n = 0;
    while (expected[n] != NULL)
        n++;
    PyObject *want = PyTuple_New(n);
    for (Py_ssize_t i = 0; want != NULL && i < n; i++) {
        PyObject *name = PyUnicode_FromString(expected[i]);
        if (name == NULL)
            Py_CLEAR(want);
        else
            PyTuple_SET_ITEM(want, i, name);
    }
    if (want == NULL)
        return -1;
    PyObject *fields = PyObject_GetAttrString(type, "_fields");
    int same = fields != NULL ? PyObject_RichCompareBool(fields, want, Py_EQ) : 0;
    if (same == 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must have the _fields %R the C path fills, not %R", argument, want,
                     fields != NULL ? fields : Py_None);
    }
    Py_XDECREF(fields);
    Py_DECREF(want);
    return same == 1 ? 0 : -1;
}

static int
FastPath_init(FastPath *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"recent", "moves", "closed", "packet_type", "verdict_type", "nics", "new_at_nic",
                            "inbound", NULL};
    PyObject *recent, *moves, *closed, *packet_type, *verdict_type, *nics, *new_at_nic, *inbound;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OO!O!O!OO", names, &PyDict_Type, &recent, &PyList_Type,
                                     &moves, &closed, &PyType_Type, &packet_type, &PyType_Type, &verdict_type,
                                     &PyDict_Type, &nics, &new_at_nic, &inbound))
        return -1;
    if (check_fields(packet_type, "packet_type", packet_fields) < 0 ||
            check_fields(verdict_type, "verdict_type", verdict_fields) < 0)
        return -1;
    if (!PyCallable_Check(new_at_nic)) {
        PyErr_SetString(PyExc_TypeError, "new_at_nic must be callable");
        return -1;
    }
    /* a copy: the list stays Python's to change, the C path indexes its own */
    PyObject *by_flags = PyList_AsTuple(moves);
    if (by_flags == NULL)
        return -1;
    int dicts = PyTuple_GET_SIZE(by_flags) == 256;
    for (Py_ssize_t i = 0; dicts && i < 256; i++)
        dicts = PyDict_Check(PyTuple_GET_ITEM(by_flags, i));
    if (!dicts) {
        PyErr_SetString(PyExc_TypeError, "moves must hold one dict per TCP flags byte");
        Py_DECREF(by_flags);
        return -1;
    }
    Py_XSETREF(self->moves, by_flags);
    Py_INCREF(closed); Py_XSETREF(self->closed, closed);
    Py_INCREF(packet_type); Py_XSETREF(self->packet_type, packet_type);
    Py_INCREF(verdict_type); Py_XSETREF(self->verdict_type, verdict_type);
    Py_INCREF(nics); Py_XSETREF(self->nics, nics);
    Py_INCREF(new_at_nic); Py_XSETREF(self->new_at_nic, new_at_nic);
    Py_INCREF(inbound); Py_XSETREF(self->inbound, inbound);
    Py_INCREF(recent); Py_XSETREF(self->recent, recent);  /* last: set, it says every field is */
    self->packets = self->allowed = 0;
    self->next_sweep = -Py_HUGE_VAL;
    return 0;
}

/* A FastPath made without __init__, or cleared by the collector, has no fields to use. */
static int
ready(FastPath *self)
{
    if (self->recent != NULL)
        return 1;
    PyErr_SetString(PyExc_TypeError, "FastPath.__init__ was not called");
    return 0;
}

/* The FastPath holds a bound method of its Dataplane, and the recent-flow table leads back to it:
   the collector must see these references to free a Dataplane no one uses. */
static int
FastPath_traverse(FastPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->recent);
    Py_VISIT(self->moves);
    Py_VISIT(self->closed);
    Py_VISIT(self->packet_type);
    Py_VISIT(self->verdict_type);
    Py_VISIT(self->nics);
    Py_VISIT(self->new_at_nic);
    Py_VISIT(self->inbound);
    return 0;
}

static int
FastPath_clear(FastPath *self)
{
    Py_CLEAR(self->recent);  /* first: code run by the releases below finds the FastPath not ready */
    Py_CLEAR(self->moves);
    Py_CLEAR(self->closed);
    Py_CLEAR(self->packet_type);
    Py_CLEAR(self->verdict_type);
    Py_CLEAR(self->nics);
    Py_CLEAR(self->new_at_nic);
    Py_CLEAR(self->inbound);
    return 0;
}

static void
FastPath_dealloc(FastPath *self)
{
    PyObject_GC_UnTrack(self);
    FastPath_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
new_tuple_of(PyObject *type, Py_ssize_t n)
{
    return ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, n);
}

static inline unsigned
be16(const unsigned char *b) { return ((unsigned)b[0] << 8) | b[1]; }

static inline unsigned long
be32(const unsigned char *b)
{
    return ((unsigned long)b[0] << 24) | ((unsigned long)b[1] << 16) | ((unsigned long)b[2] << 8) | b[3];
}

/* The common frame, or 0: Ethernet, IPv4 without options or fragments, TCP or UDP, as decode.py's fast path. */
typedef struct {
    Py_ssize_t length;
    unsigned long src, dst;
    unsigned sport, dport, ip_id;
    int proto, flags;
} Common;

static int
parse(PyObject *frame, Common *c)
{
    if (!PyBytes_CheckExact(frame))
        return 0;
    Py_ssize_t n = PyBytes_GET_SIZE(frame);
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(frame);
    if (n < 54 || be16(b + 12) != 0x0800 || b[14] != 0x45 || (be16(b + 20) & 0x3FFF))
        return 0;
    unsigned total = be16(b + 16);
    int proto = b[23];
    if (total < 40 || n < 14 + (Py_ssize_t)total || !(proto == 6 || (proto == 17 && total >= 28)))
        return 0;
    c->length = n;
    c->proto = proto;
    c->flags = proto == 6 ? b[47] : 0;
    c->src = be32(b + 26);
    c->dst = be32(b + 30);
    c->sport = be16(b + 34);
    c->dport = be16(b + 36);
    c->ip_id = be16(b + 18);
    return 1;
}

/* decode.Packet of the common frame, as decode_frame gives it. */
static PyObject *
make_packet(FastPath *self, const Common *c)
{
    PyObject *packet = new_tuple_of(self->packet_type, 17);
    if (packet == NULL)
        return NULL;
    PyObject *made[7] = {PyLong_FromLong(c->proto), PyLong_FromUnsignedLong(c->src), PyLong_FromUnsignedLong(c->dst),
                         PyLong_FromUnsignedLong(c->sport), PyLong_FromUnsignedLong(c->dport),
                         PyLong_FromLong(c->flags), PyLong_FromLong(-1)};
    PyObject *more[2] = {PyLong_FromSsize_t(c->length), PyLong_FromUnsignedLong(c->ip_id)};
    /* the tuple owns each new reference (a NULL item makes the whole tuple fail below) */
    for (int i = 0; i < 6; i++)
        PyTuple_SET_ITEM(packet, i + 1, made[i]);
    PyTuple_SET_ITEM(packet, 0, Py_NewRef(small[4]));
    PyTuple_SET_ITEM(packet, 7, made[6]);
    PyTuple_SET_ITEM(packet, 8, Py_XNewRef(made[6]));
    PyTuple_SET_ITEM(packet, 9, Py_NewRef(small[0]));
    PyTuple_SET_ITEM(packet, 10, more[0]);
    PyTuple_SET_ITEM(packet, 11, more[1]);
    PyTuple_SET_ITEM(packet, 12, Py_NewRef(small[0]));
    PyTuple_SET_ITEM(packet, 13, Py_NewRef(Py_False));
    PyTuple_SET_ITEM(packet, 14, Py_NewRef(Py_False));
    PyTuple_SET_ITEM(packet, 15, Py_NewRef(s_empty_tuple));
    PyTuple_SET_ITEM(packet, 16, Py_NewRef(Py_None));
    for (int i = 0; i < 17; i++) {
        if (PyTuple_GET_ITEM(packet, i) == NULL) {
            Py_DECREF(packet);
            return NULL;
        }
    }
    return packet;
}

/* Every leg of the plan must hold a live record: else the Python path decides (it ends dead records).
   1 when live, 0 when not, -1 when the entry is not (legs, translated, plan, head): Python code fills
   the table, so its shape is checked before the C path reads it. */
static int
plan_is_live(PyObject *entry, double ts, PyObject *closed)
{
    PyObject *plan, *head;
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 4 ||
            !PyTuple_CheckExact(plan = PyTuple_GET_ITEM(entry, 2)) || PyTuple_GET_SIZE(plan) == 0 ||
            !PyTuple_CheckExact(head = PyTuple_GET_ITEM(entry, 3)) || PyTuple_GET_SIZE(head) != 4)
        goto bad;
    int live = 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(plan); i++) {
        PyObject *leg = PyTuple_GET_ITEM(plan, i);
        if (!PyTuple_CheckExact(leg) || PyTuple_GET_SIZE(leg) != 4 || !Py_IS_TYPE(PyTuple_GET_ITEM(leg, 0), &RecordType))
            goto bad;
        Record *r = (Record *)PyTuple_GET_ITEM(leg, 0);
        if (r->state == NULL)
            goto bad;
        if (!r->bucket || r->expires <= ts || r->state == closed)
            live = 0;
    }
    return live;
bad:
    PyErr_SetString(PyExc_TypeError, "a recent-flow entry must be (legs, translated, plan, head), its plan "
                    "(FlowRecord, forward, timeouts, table) legs of initialised C records");
    return -1;
}

/* The 5-tuple of a common frame as the dataplane keys it: (proto, 4, src, sport, dst, dport), or the
   direction-independent form (the lower endpoint first). */
static inline int
second_endpoint_lower(const Common *c)
{
    return c->src > c->dst || (c->src == c->dst && c->sport > c->dport);
}

static PyObject *
make_key(const Common *c, int canonical)
{
    int swap = canonical && second_endpoint_lower(c);
    PyObject *key = PyTuple_New(6);
    if (key == NULL)
        return NULL;
    PyTuple_SET_ITEM(key, 0, PyLong_FromLong(c->proto));
    PyTuple_SET_ITEM(key, 1, Py_NewRef(small[4]));
    PyTuple_SET_ITEM(key, 2, PyLong_FromUnsignedLong(swap ? c->dst : c->src));
    PyTuple_SET_ITEM(key, 3, PyLong_FromUnsignedLong(swap ? c->dport : c->sport));
    PyTuple_SET_ITEM(key, 4, PyLong_FromUnsignedLong(swap ? c->src : c->dst));
    PyTuple_SET_ITEM(key, 5, PyLong_FromUnsignedLong(swap ? c->sport : c->dport));
    for (int i = 0; i < 6; i++) {
        if (PyTuple_GET_ITEM(key, i) == NULL) {
            Py_DECREF(key);
            return NULL;
        }
    }
    return key;
}

/* The NIC of a new flow from outside the scenario to one of its NICs, when its destination's table holds
   no record of it (a dead one included: the Python path ends those): where Dataplane._packet would
   call _new_at_nic. A new reference, or NULL (with an exception set on error). */
static PyObject *
new_inbound_nic(FastPath *self, const Common *c, PyObject *key)
{
    PyObject *src = PyLong_FromUnsignedLong(c->src), *dst = PyLong_FromUnsignedLong(c->dst);
    PyObject *at_src = NULL, *at_dst = NULL;
    if (src != NULL && dst != NULL) {
        at_src = PyDict_GetItemWithError(self->nics, src);
        if (at_src == NULL && !PyErr_Occurred())
            at_dst = PyDict_GetItemWithError(self->nics, dst);
    }
    Py_XDECREF(src);
    Py_XDECREF(dst);
    if (at_dst == NULL)
        return NULL;
    if (!PyTuple_Check(at_dst) || PyTuple_GET_SIZE(at_dst) != 2 || !PyDict_Check(PyTuple_GET_ITEM(at_dst, 1))) {
        PyErr_SetString(PyExc_TypeError, "nics must map an address to (NIC, dict of its flow records)");
        return NULL;
    }
    PyObject *canonical = second_endpoint_lower(c) ? make_key(c, 1) : Py_NewRef(key);
    if (canonical == NULL)
        return NULL;
    PyObject *record = PyDict_GetItemWithError(PyTuple_GET_ITEM(at_dst, 1), canonical);
    Py_DECREF(canonical);
    return record == NULL && !PyErr_Occurred() ? Py_NewRef(PyTuple_GET_ITEM(at_dst, 0)) : NULL;
}

/* Pass a packet of a live recent flow as pipeline._known does: 1 with the flow's entry and the last
   leg's new state (new references), 0 when the Python path must decide, -1 on error. */
static int
pass_recent(FastPath *self, const Common *c, PyObject *key, double ts, PyObject **entry_out, PyObject **state_out)
{
    PyObject *entry = PyDict_GetItemWithError(self->recent, key);
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int live = plan_is_live(entry, ts, self->closed);
    if (live <= 0)
        return live;
    PyObject *plan = PyTuple_GET_ITEM(entry, 2);
    /* The table's reschedule is Python code: it may drop the entry (and with it the plan and its
       records) or change the moves, so what is used across it is held here. */
    Py_INCREF(entry);
    PyObject *by_state = c->proto == 6 ? Py_NewRef(PyTuple_GET_ITEM(self->moves, c->flags)) : NULL;
    PyObject *state = NULL;
    Py_ssize_t legs = PyTuple_GET_SIZE(plan);
    for (Py_ssize_t i = 0; i < legs; i++) {
        /* (record, forward, timeouts: the TCP dict of state → seconds, or the seconds of the flow, table) */
        PyObject *leg = PyTuple_GET_ITEM(plan, i);
        Record *r = (Record *)PyTuple_GET_ITEM(leg, 0);
        int forward = PyTuple_GET_ITEM(leg, 1) == Py_True;
        PyObject *timeouts = PyTuple_GET_ITEM(leg, 2);
        if (forward) {
            r->packets_out += 1;
            r->bytes_out += c->length;
        } else {
            r->packets_in += 1;
            r->bytes_in += c->length;
        }
        double timeout;
        if (by_state != NULL) {
            PyObject *next = PyDict_GetItemWithError(by_state, r->state);
            if (next != NULL && (!PyTuple_Check(next) || PyTuple_GET_SIZE(next) != 2 || !PyDict_Check(timeouts))) {
                PyErr_SetString(PyExc_TypeError, "a TCP move must be (next state, next state), its timeouts a dict");
                goto error;
            }
            PyObject *seconds = next ? PyDict_GetItemWithError(timeouts, PyTuple_GET_ITEM(next, forward)) : NULL;
            if (seconds == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "a TCP state without moves or timeout");
                goto error;
            }
            Py_XSETREF(state, Py_NewRef(PyTuple_GET_ITEM(next, forward)));
            Py_SETREF(r->state, Py_NewRef(state));
            timeout = PyFloat_AsDouble(seconds);
        } else {
            Py_XSETREF(state, Py_NewRef(r->state));
            timeout = PyFloat_AsDouble(timeouts);
        }
        if (timeout == -1.0 && PyErr_Occurred())
            goto error;
        double expires = r->expires = ts + timeout;
        if (expires <= (double)(r->bucket - 1)) {
            PyObject *done = PyObject_CallMethodOneArg(PyTuple_GET_ITEM(leg, 3), s_reschedule, (PyObject *)r);
            if (done == NULL)
                goto error;
            Py_DECREF(done);
        }
    }
    Py_XDECREF(by_state);
    self->packets += 1;
    self->allowed += 1;
    *entry_out = entry;
    *state_out = state;
    return 1;
error:
    Py_DECREF(entry);
    Py_XDECREF(by_state);
    Py_XDECREF(state);
    return -1;
}

static PyObject *
FastPath_process(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    Common c;
    PyObject *entry, *state;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "process(frame, ts)");
        return NULL;
    }
    if (!ready(self))
        return NULL;
    double ts = PyFloat_AsDouble(args[1]);
    if (ts == -1.0 && PyErr_Occurred())
        return NULL;
    if (!parse(args[0], &c))
        Py_RETURN_NONE;
    if (ts >= self->next_sweep)  /* the Python path sweeps the tables first */
        return make_packet(self, &c);
    PyObject *key = make_key(&c, 0);
    if (key == NULL)
        return NULL;
    int passed = pass_recent(self, &c, key, ts, &entry, &state);
    if (passed <= 0) {
        PyObject *nic = passed == 0 ? new_inbound_nic(self, &c, key) : NULL;
        PyObject *result = passed == 0 && !PyErr_Occurred() ? make_packet(self, &c) : NULL;
        if (result != NULL && nic != NULL) {
            PyObject *packet = result, *new_at_nic = Py_NewRef(self->new_at_nic), *inbound = Py_NewRef(self->inbound);
            PyObject *call[6] = {packet, args[1], key, nic, inbound, Py_False};
            self->packets += 1;
            result = PyObject_Vectorcall(new_at_nic, call, 6, NULL);
            Py_DECREF(new_at_nic);
            Py_DECREF(inbound);
            Py_DECREF(packet);
        }
        Py_XDECREF(nic);
        Py_DECREF(key);
        return result;
    }
    Py_DECREF(key);
    /* head: (direction, nic, nsg, rule) of the flow's last leg */
    PyObject *head = PyTuple_GET_ITEM(entry, 3);
    PyObject *packet = make_packet(self, &c);
    PyObject *state_value = packet != NULL ? PyObject_GetAttr(state, s_value) : NULL;
    PyObject *verdict = state_value != NULL ? new_tuple_of(self->verdict_type, 12) : NULL;
    if (verdict != NULL) {
        PyObject *fields[12] = {args[1], s_allow, s_flow, PyTuple_GET_ITEM(head, 0), PyTuple_GET_ITEM(head, 1),
                                PyTuple_GET_ITEM(head, 2), PyTuple_GET_ITEM(head, 3), state_value, packet,
                                PyTuple_GET_ITEM(entry, 1), s_empty, s_empty_tuple};
        for (int i = 0; i < 12; i++)
            PyTuple_SET_ITEM(verdict, i, (i == 7 || i == 8) ? fields[i] : Py_NewRef(fields[i]));
    } else {
        Py_XDECREF(state_value);
        Py_XDECREF(packet);
    }
    Py_DECREF(entry);
    Py_DECREF(state);
    return verdict;
}

static PyObject *
FastPath_pass_frames(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pass_frames(frames, until, limit)");
        return NULL;
    }
    if (!ready(self))
        return NULL;
    PyObject *frames = args[0];
    if (!PyIter_Check(frames)) {
        PyErr_Format(PyExc_TypeError, "frames must be an iterator, not %.100s", Py_TYPE(frames)->tp_name);
        return NULL;
    }
    double until = PyFloat_AsDouble(args[1]);
    if (until == -1.0 && PyErr_Occurred())
        return NULL;
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t passed = 0;
    double last = 0.0;
    PyObject *frame = NULL, *entry, *state;
    while (passed < limit) {
        frame = PyIter_Next(frames);
        if (frame == NULL) {
            if (PyErr_Occurred()) {
                /* returned, not raised: the caller counts the frames passed before it raises it */
                PyObject *type, *value, *traceback;
                PyErr_Fetch(&type, &value, &traceback);
                PyErr_NormalizeException(&type, &value, &traceback);
                if (value == NULL) {
                    PyErr_Restore(type, value, traceback);
                    return NULL;
                }
                if (traceback != NULL)
                    PyException_SetTraceback(value, traceback);
                Py_XDECREF(type);
                Py_XDECREF(traceback);
                frame = value;
            }
            break;
        }
        if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) < 3) {
            Py_DECREF(frame);
            PyErr_SetString(PyExc_TypeError, "frames must yield (ts, linktype, data, ...) tuples");
            return NULL;
        }
        double ts = PyFloat_AsDouble(PyTuple_GET_ITEM(frame, 0));
        if (ts == -1.0 && PyErr_Occurred()) {
            Py_DECREF(frame);
            return NULL;
        }
        Common c;
        int overflow;
        if (ts < until && ts < self->next_sweep && PyLong_CheckExact(PyTuple_GET_ITEM(frame, 1)) &&
                PyLong_AsLongAndOverflow(PyTuple_GET_ITEM(frame, 1), &overflow) == 1 &&
                parse(PyTuple_GET_ITEM(frame, 2), &c)) {
            PyObject *key = make_key(&c, 0);
            int done = key == NULL ? -1 : pass_recent(self, &c, key, ts, &entry, &state);
            Py_XDECREF(key);
            if (done < 0) {
                Py_DECREF(frame);
                return NULL;
            }
            if (done) {
                Py_DECREF(entry);
                Py_DECREF(state);
                passed += 1;
                last = ts;
                Py_CLEAR(frame);
                continue;
            }
        }
        break;
    }
    return Py_BuildValue("(nNN)", passed, passed ? PyFloat_FromDouble(last) : Py_NewRef(Py_None),
                         frame != NULL ? frame : Py_NewRef(Py_None));
}

static PyMethodDef FastPath_methods[] = {
    {"process", (PyCFunction)(void (*)(void))FastPath_process, METH_FASTCALL,
     "process(frame, ts) -> the Verdict of a recent flow or of a new inbound flow, else the decoded Packet, "
     "else None"},
    {"pass_frames", (PyCFunction)(void (*)(void))FastPath_pass_frames, METH_FASTCALL,
     "pass_frames(frames, until, limit) -> (passed, last ts passed, the next frame for Dataplane.process, or None, "
     "or the exception the frames raised)"},
    {NULL},
};

static PyMemberDef FastPath_members[] = {
    {"next_sweep", T_DOUBLE, offsetof(FastPath, next_sweep), 0, NULL},
    {"packets", T_LONGLONG, offsetof(FastPath, packets), 0, NULL},
    {"allowed", T_LONGLONG, offsetof(FastPath, allowed), 0, NULL},
    {NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataplane._fastpath.FastPath",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)FastPath_traverse,
    .tp_clear = (inquiry)FastPath_clear,
    .tp_doc = "The recent-flow path of Dataplane.process, in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastPath_init,
    .tp_dealloc = (destructor)FastPath_dealloc,
    .tp_methods = FastPath_methods,
    .tp_members = FastPath_members,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, NULL};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    RecordType.tp_vectorcall = Record_vectorcall;
    if (PyType_Ready(&RecordType) < 0 || PyType_Ready(&FastPathType) < 0)
        return NULL;
    s_value = PyUnicode_InternFromString("_value_");
    s_reschedule = PyUnicode_InternFromString("reschedule");
    s_allow = PyUnicode_InternFromString("Allow");
    s_flow = PyUnicode_InternFromString("flow");
    s_empty = PyUnicode_InternFromString("");
    s_empty_tuple = PyTuple_New(0);
    if (s_value == NULL || s_reschedule == NULL || s_allow == NULL || s_flow == NULL || s_empty == NULL ||
            s_empty_tuple == NULL)
        return NULL;
    for (int i = 0; i < 8; i++) {
        if ((small[i] = PyLong_FromLong(i)) == NULL)
            return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Record", (PyObject *)&RecordType) < 0 ||
            PyModule_AddObjectRef(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
