/* The per-packet hot path in C, measured necessary by bench/ (issues 5 and 6).

   Record: conntrack.FlowRecord with its fields inline, and not tracked by the cyclic garbage
   collector (a record never refers back to anything that refers to it), so half a million live
   flows cost the collector nothing.

   FastPath.process(frame, ts): the common frame (Ethernet, IPv4 without options or fragments,
   TCP or UDP) of a flow in the dataplane's recent-flow table passes here without Python code; the
   first packet of a flow from outside to a NIC goes straight to Dataplane._new_at_nic; anything
   else comes back decoded (a Packet) or as None (the Python decoder's case).
   FastPath.pass_frames(frames, until, limit): the replay's loop, when it writes nothing per packet:
   the frames of recent flows pass in C, and the first other frame goes back to Dataplane.process.
   tests/test_pipeline_fast_path.py proves both paths decide every packet alike. */

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
    int reversed = PyObject_IsTrue(args[1]);
    if ((expires == -1.0 && PyErr_Occurred()) || reversed < 0)
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

static PyGetSetDef Record_getset[] = {
    {"initiator", (getter)Record_initiator, NULL, "the 5-tuple as the flow's first packet carried it", NULL},
    {NULL},
};

static PyMemberDef Record_members[] = {
    {"key", T_OBJECT, offsetof(Record, key), 0, NULL},
    {"state", T_OBJECT, offsetof(Record, state), 0, NULL},
    {"outcome", T_OBJECT, offsetof(Record, outcome), 0, NULL},
    {"nat", T_OBJECT, offsetof(Record, nat), 0, NULL},
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
    PyObject *moves;       /* list of 256 dicts: state → (next when the responder sent, when the initiator sent) */
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

static PyObject *s_value, *s_schedule, *s_allow, *s_flow, *s_empty, *s_empty_tuple;
static PyObject *small[8];

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
    if (PyList_GET_SIZE(moves) != 256) {
        PyErr_SetString(PyExc_ValueError, "moves must have one entry per TCP flags byte");
        return -1;
    }
    Py_INCREF(recent); Py_XSETREF(self->recent, recent);
    Py_INCREF(moves); Py_XSETREF(self->moves, moves);
    Py_INCREF(closed); Py_XSETREF(self->closed, closed);
    Py_INCREF(packet_type); Py_XSETREF(self->packet_type, packet_type);
    Py_INCREF(verdict_type); Py_XSETREF(self->verdict_type, verdict_type);
    Py_INCREF(nics); Py_XSETREF(self->nics, nics);
    Py_INCREF(new_at_nic); Py_XSETREF(self->new_at_nic, new_at_nic);
    Py_INCREF(inbound); Py_XSETREF(self->inbound, inbound);
    self->packets = self->allowed = 0;
    self->next_sweep = -Py_HUGE_VAL;
    return 0;
}

static void
FastPath_dealloc(FastPath *self)
{
    Py_XDECREF(self->recent);
    Py_XDECREF(self->moves);
    Py_XDECREF(self->closed);
    Py_XDECREF(self->packet_type);
    Py_XDECREF(self->verdict_type);
    Py_XDECREF(self->nics);
    Py_XDECREF(self->new_at_nic);
    Py_XDECREF(self->inbound);
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

/* Every leg of the plan must hold a live record: else the Python path decides (it ends dead records). */
static int
plan_is_live(PyObject *plan, double ts, PyObject *closed)
{
    Py_ssize_t legs = PyTuple_GET_SIZE(plan);
    for (Py_ssize_t i = 0; i < legs; i++) {
        Record *r = (Record *)PyTuple_GET_ITEM(PyTuple_GET_ITEM(plan, i), 0);
        if (!r->bucket || r->expires <= ts || r->state == closed)
            return 0;
    }
    return 1;
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
   call _new_at_nic. Borrowed reference, or NULL (with an exception set on error). */
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
    PyObject *canonical = second_endpoint_lower(c) ? make_key(c, 1) : Py_NewRef(key);
    if (canonical == NULL)
        return NULL;
    PyObject *record = PyDict_GetItemWithError(PyTuple_GET_ITEM(at_dst, 1), canonical);
    Py_DECREF(canonical);
    return record == NULL ? PyTuple_GET_ITEM(at_dst, 0) : NULL;
}

/* Pass a packet of a live recent flow as pipeline._known does: 1 with the flow's entry and the last
   leg's new state (borrowed), 0 when the Python path must decide, -1 on error. */
static int
pass_recent(FastPath *self, const Common *c, PyObject *key, double ts, PyObject **entry_out, PyObject **state_out)
{
    PyObject *entry = PyDict_GetItemWithError(self->recent, key);
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *plan = PyTuple_GET_ITEM(entry, 2);
    if (!plan_is_live(plan, ts, self->closed))
        return 0;
    PyObject *by_state = c->proto == 6 ? PyList_GET_ITEM(self->moves, c->flags) : NULL;
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
        state = r->state;
        double timeout;
        if (by_state != NULL) {
            PyObject *next = PyDict_GetItemWithError(by_state, state);
            PyObject *seconds = next ? PyDict_GetItemWithError(timeouts, PyTuple_GET_ITEM(next, forward)) : NULL;
            if (seconds == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "a TCP state without moves or timeout");
                return -1;
            }
            state = PyTuple_GET_ITEM(next, forward);
            Py_SETREF(r->state, Py_NewRef(state));
            timeout = PyFloat_AsDouble(seconds);
        } else {
            timeout = PyFloat_AsDouble(timeouts);
        }
        double expires = r->expires = ts + timeout;
        if (expires <= (double)(r->bucket - 1)) {
            PyObject *done = PyObject_CallMethodOneArg(PyTuple_GET_ITEM(leg, 3), s_schedule, (PyObject *)r);
            if (done == NULL)
                return -1;
            Py_DECREF(done);
        }
    }
    self->packets += 1;
    self->allowed += 1;
    *entry_out = entry;
    *state_out = state;
    return 1;
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
    PyObject *nic = passed == 0 ? new_inbound_nic(self, &c, key) : NULL;
    PyObject *packet = passed >= 0 && !PyErr_Occurred() ? make_packet(self, &c) : NULL;
    if (packet == NULL || passed == 0) {
        PyObject *result = packet;
        if (packet != NULL && nic != NULL) {
            PyObject *call[6] = {packet, args[1], key, nic, self->inbound, Py_False};
            self->packets += 1;
            result = PyObject_Vectorcall(self->new_at_nic, call, 6, NULL);
            Py_DECREF(packet);
        }
        Py_DECREF(key);
        return result;
    }
    Py_DECREF(key);
    /* head: (direction, nic, nsg, rule) of the flow's last leg */
    PyObject *head = PyTuple_GET_ITEM(entry, 3);
    PyObject *state_value = PyObject_GetAttr(state, s_value);
    PyObject *verdict = new_tuple_of(self->verdict_type, 12);
    if (state_value == NULL || verdict == NULL) {
        Py_XDECREF(state_value); Py_XDECREF(verdict); Py_DECREF(packet);
        return NULL;
    }
    PyObject *fields[12] = {args[1], s_allow, s_flow, PyTuple_GET_ITEM(head, 0), PyTuple_GET_ITEM(head, 1),
                            PyTuple_GET_ITEM(head, 2), PyTuple_GET_ITEM(head, 3), state_value, packet,
                            PyTuple_GET_ITEM(entry, 1), s_empty, s_empty_tuple};
    for (int i = 0; i < 12; i++)
        PyTuple_SET_ITEM(verdict, i, (i == 7 || i == 8) ? fields[i] : Py_NewRef(fields[i]));
    return verdict;
}

static PyObject *
FastPath_pass_frames(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pass_frames(frames, until, limit)");
        return NULL;
    }
    PyObject *frames = args[0];
    double until = PyFloat_AsDouble(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t passed = 0;
    double last = 0.0;
    PyObject *frame = NULL, *entry, *state;
    while (passed < limit) {
        frame = PyIter_Next(frames);
        if (frame == NULL) {
            if (PyErr_Occurred())
                return NULL;
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
        if (ts < until && ts < self->next_sweep && PyLong_CheckExact(PyTuple_GET_ITEM(frame, 1)) &&
                PyLong_AsLong(PyTuple_GET_ITEM(frame, 1)) == 1 && parse(PyTuple_GET_ITEM(frame, 2), &c)) {
            PyObject *key = make_key(&c, 0);
            int done = key == NULL ? -1 : pass_recent(self, &c, key, ts, &entry, &state);
            Py_XDECREF(key);
            if (done < 0) {
                Py_DECREF(frame);
                return NULL;
            }
            if (done) {
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
     "pass_frames(frames, until, limit) -> (passed, last ts passed, the next frame for Dataplane.process or None)"},
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
    .tp_flags = Py_TPFLAGS_DEFAULT,
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
    s_schedule = PyUnicode_InternFromString("_schedule");
    s_allow = PyUnicode_InternFromString("Allow");
    s_flow = PyUnicode_InternFromString("flow");
    s_empty = PyUnicode_InternFromString("");
    s_empty_tuple = PyTuple_New(0);
    for (int i = 0; i < 8; i++)
        small[i] = PyLong_FromLong(i);
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RecordType);
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "Record", (PyObject *)&RecordType) < 0 ||
        PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0)
        return NULL;
    return m;
}
