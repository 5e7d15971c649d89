/* The per-packet hot path in C, measured necessary by bench/: pure Python could not reach its goals.

   Record: conntrack.FlowRecord with its fields inline, and not tracked by the cyclic garbage
   collector (a record never refers back to anything that refers to it), so half a million live
   flows cost the collector nothing.
   RecentTable: the dataplane's recent-flow table, a mapping whose IPv4 keys are plain numbers in an
   open-addressing table and whose entries are C structs, so a frame's flow is found without making a
   Python object, and live entries cost the collector nothing.
   ShardFilter: shards.FrameShards for the records pass_records walks in a worker.

   Rules: a classifier.Classifier's IPv4 tables as arrays, for the decision of new flows.

   FastPath.process(frame, ts): the common frame (Ethernet, IPv4 without options or fragments,
   TCP or UDP) of a flow in the recent-flow table passes here without Python code (a flow at one NIC
   is remembered here at its second packet); the first packet of a flow from outside to a NIC is
   decided here as Dataplane._new_at_nic decides it (decide_new_flows; else it goes to that method),
   one between two NICs as Dataplane._new does; to a NIC's public IP it goes to
   Dataplane._new_translated; anything else comes back decoded (a Packet) or as None (the Python
   decoder's case).
   FastPath.pass_records(buffer, pos, format, last, until, limit[, shard[, hits_only[, lines, index[, frames[,
   tally]]]]]): the replay's loop, when it writes nothing per packet (or only verdict lines, JSON or
   tab-separated for Parquet, which it writes for the packets it takes; or the allowed packets, whose pcap
   records it writes; or outputs that hear of new flows only, flow logs and the denied packets: with
   `new_flows` set, a walk stops before or after new flows; or the report, whose Tally counts the packets
   of the flows it watches by minute): the same straight from the capture's buffer (pcap or pcapng), and
   the first record it cannot take goes back to the Python reader and Dataplane.process.
   FastPath.pass_frames(frames, until, limit[, tally]): the same over an iterator of frames (several captures
   merged by time).
   FastPath.expire_due(table, now): a sweep of one NIC's flow table, when nothing hears of the flows
   that end (Conntrack.advance).
   FastPath.pass_pair(buffer, pos, format, last, until, limit, other, shard, tally, noted, known): whatif's walk,
   each record through both its dataplanes, and the Tally's count of the packets and bytes of the flows
   found changed.
   tests/test_pipeline_fast_path.py proves both paths decide every packet alike and write the same
   verdict lines, tests/test_classifier.py that Rules finds the reference's first match,
   tests/test_whatif.py that whatif's C walks report what its Python reader does;
   tests/test_fastpath_safety.py that misuse raises and that a Dataplane and its FastPath are freed. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>

#include "_digits.h"

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

/* -- RecentTable ----------------------------------------------------------------------------- */

/* The recent-flow table: a mapping of keys (proto, version, src, sport, dst, dport) to entries, like a
   dict, whose IPv4 keys live in an open-addressing table of plain numbers, so the C path finds a
   frame's flow without making a Python object. Other keys go to a dict beside it. Entries are only
   added, replaced or all cleared (never removed one by one): probing needs no tombstones.
   An entry is (legs, translated, head): each leg (nic, key at the NIC, record, forward, timeouts: the
   TCP dict of state → seconds or the flow's seconds, the FlowTable), head what a Verdict says of the
   flow. An IPv4 entry is kept as a C struct, not as tuples: tens of thousands of long-lived tuples
   would make every full collection of the cyclic GC walk them (measured: a third of a churn replay). */
typedef struct {
    PyObject *nic, *key, *timeouts, *table;
    Record *record;
    int forward;
} EntryLeg;

typedef struct {
    Py_ssize_t refs;  /* the table's slot, and the C path while it calls back into Python */
    uint32_t src, dst;  /* the key it is filed under */
    uint16_t sport, dport;
    uint8_t proto;
    uint8_t line_separated;  /* line_tail is tab-separated */
    PyObject *translated, *head;
    PyObject *line_state, *line_tail;  /* the JSON after the flow in the verdict line of a packet leaving
                                          the flow in this state (pass_records with lines), or NULL */
    Py_ssize_t n;
    EntryLeg legs[];
} Entry;

typedef struct {
    uint32_t tag;  /* the high half of the key's hash: most probes of other keys stop here */
    Entry *entry;  /* NULL: a free slot */
} Slot;

static void
entry_release(Entry *e)
{
    if (e == NULL || --e->refs > 0)
        return;
    for (Py_ssize_t i = 0; i < e->n; i++) {
        EntryLeg *leg = &e->legs[i];
        Py_XDECREF(leg->nic);
        Py_XDECREF(leg->key);
        Py_XDECREF(leg->timeouts);
        Py_XDECREF(leg->table);
        Py_XDECREF((PyObject *)leg->record);
    }
    Py_XDECREF(e->translated);
    Py_XDECREF(e->head);
    Py_XDECREF(e->line_state);
    Py_XDECREF(e->line_tail);
    PyMem_Free(e);
}

/* The struct of an entry given as a tuple, or NULL with TypeError: its shape is checked once here,
   so the C path reads it without checks. */
static Entry *
entry_of(PyObject *value)
{
    PyObject *legs, *head;
    if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 3 ||
            !PyTuple_Check(legs = PyTuple_GET_ITEM(value, 0)) || PyTuple_GET_SIZE(legs) == 0 ||
            PyTuple_GET_SIZE(legs) > 16 ||
            !PyTuple_Check(head = PyTuple_GET_ITEM(value, 2)) || PyTuple_GET_SIZE(head) != 4)
        goto bad;
    Py_ssize_t n = PyTuple_GET_SIZE(legs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *leg = PyTuple_GET_ITEM(legs, i);
        if (!PyTuple_Check(leg) || PyTuple_GET_SIZE(leg) != 6 || !Py_IS_TYPE(PyTuple_GET_ITEM(leg, 2), &RecordType) ||
                !PyBool_Check(PyTuple_GET_ITEM(leg, 3)) || ((Record *)PyTuple_GET_ITEM(leg, 2))->state == NULL ||
                !(PyDict_Check(PyTuple_GET_ITEM(leg, 4)) || PyFloat_Check(PyTuple_GET_ITEM(leg, 4)) ||
                  PyLong_Check(PyTuple_GET_ITEM(leg, 4))))
            goto bad;
    }
    Entry *e = PyMem_Calloc(1, sizeof(Entry) + n * sizeof(EntryLeg));
    if (e == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    e->refs = 1;
    e->n = n;
    e->translated = Py_NewRef(PyTuple_GET_ITEM(value, 1));
    e->head = Py_NewRef(head);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *leg = PyTuple_GET_ITEM(legs, i);
        EntryLeg *to = &e->legs[i];
        to->nic = Py_NewRef(PyTuple_GET_ITEM(leg, 0));
        to->key = Py_NewRef(PyTuple_GET_ITEM(leg, 1));
        to->record = (Record *)Py_NewRef(PyTuple_GET_ITEM(leg, 2));
        to->forward = PyTuple_GET_ITEM(leg, 3) == Py_True;
        to->timeouts = Py_NewRef(PyTuple_GET_ITEM(leg, 4));
        to->table = Py_NewRef(PyTuple_GET_ITEM(leg, 5));
    }
    return e;
bad:
    PyErr_SetString(PyExc_TypeError, "a recent-flow entry must be (legs, translated, head): legs a tuple of "
                    "(nic, key, FlowRecord, forward, timeouts, table), head a 4-tuple");
    return NULL;
}

/* The entry of a slot as the tuple it was given as (a leg's key NULL: the slot's key). */
static PyObject *
entry_tuple(Slot *s)
{
    Entry *e = s->entry;
    PyObject *legs = PyTuple_New(e->n);
    for (Py_ssize_t i = 0; legs != NULL && i < e->n; i++) {
        EntryLeg *leg = &e->legs[i];
        PyObject *key = leg->key != NULL ? Py_NewRef(leg->key) :
            Py_BuildValue("(BBkHkH)", e->proto, 4, (unsigned long)e->src, e->sport, (unsigned long)e->dst, e->dport);
        PyObject *item = key == NULL ? NULL : PyTuple_Pack(6, leg->nic, key, (PyObject *)leg->record,
                                                           leg->forward ? Py_True : Py_False, leg->timeouts, leg->table);
        Py_XDECREF(key);
        if (item == NULL)
            Py_CLEAR(legs);
        else
            PyTuple_SET_ITEM(legs, i, item);
    }
    if (legs == NULL)
        return NULL;
    PyObject *tuple = PyTuple_Pack(3, legs, e->translated, e->head);
    Py_DECREF(legs);
    return tuple;
}

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t mask;       /* slots - 1, a power of two less one */
    Py_ssize_t used;
    Py_ssize_t limit;  /* entries it holds at most: the C path empties it when full, as the Python path does */
    PyObject *other;   /* dict of the keys the slots do not hold */
} RecentTable;

static inline uint64_t
mix(uint64_t h)  /* MurmurHash3's finaliser: every input bit reaches the low bits the table indexes by */
{
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDULL;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 33);
}

static inline size_t
slot_hash(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto)
{
    return (size_t)mix(((uint64_t)src << 32 | dst) ^ mix((uint64_t)sport << 24 | (uint64_t)dport << 8 | proto));
}

static Slot *
slot_of(RecentTable *t, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto)
{
    size_t h = slot_hash(src, dst, sport, dport, proto);
    uint32_t tag = (uint32_t)((uint64_t)h >> 32);
    size_t i = h & t->mask;
    for (;;) {
        Slot *s = &t->slots[i];
        Entry *e = s->entry;
        if (e == NULL) {
            s->tag = tag;  /* a free slot: where the key goes, if it goes in */
            return s;
        }
        if (s->tag == tag && e->src == src && e->dst == dst && e->sport == sport && e->dport == dport &&
                e->proto == proto)
            return s;
        i = (i + 1) & t->mask;
    }
}

/* The numbers of an IPv4 key: 1, or 0 when the key belongs in the dict (not a 6-tuple of ints of an
   IPv4 flow), or -1 on error. */
static int
numbers_of(PyObject *key, uint32_t *src, uint32_t *dst, uint16_t *sport, uint16_t *dport, uint8_t *proto)
{
    if (!PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 6)
        return 0;
    unsigned long long v[6];
    static const unsigned long long most[6] = {255, 4, 0xFFFFFFFFULL, 65535, 0xFFFFFFFFULL, 65535};
    for (int i = 0; i < 6; i++) {
        PyObject *item = PyTuple_GET_ITEM(key, i);
        if (!PyLong_CheckExact(item))
            return 0;
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (overflow || x < 0 || (unsigned long long)x > most[i])
            return 0;
        v[i] = (unsigned long long)x;
    }
    if (v[1] != 4)
        return 0;
    *proto = (uint8_t)v[0];
    *src = (uint32_t)v[2];
    *sport = (uint16_t)v[3];
    *dst = (uint32_t)v[4];
    *dport = (uint16_t)v[5];
    return 1;
}

static int
RecentTable_grow(RecentTable *t)
{
    size_t old_size = t->mask + 1, size = old_size * 2;
    Slot *old = t->slots, *slots = PyMem_Calloc(size, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->slots = slots;
    t->mask = size - 1;
    for (size_t i = 0; i < old_size; i++) {
        Entry *e = old[i].entry;
        if (e != NULL)
            slot_of(t, e->src, e->dst, e->sport, e->dport, e->proto)->entry = e;
    }
    PyMem_Free(old);
    return 0;
}

static PyObject *
RecentTable_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t limit;
    static char *names[] = {"limit", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", names, &limit))
        return NULL;
    RecentTable *t = (RecentTable *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->limit = limit;
    t->mask = 1023;
    t->slots = PyMem_Calloc(t->mask + 1, sizeof(Slot));
    t->other = PyDict_New();
    if (t->slots == NULL || t->other == NULL) {
        int no_memory = t->slots == NULL;
        Py_DECREF(t);
        return no_memory ? PyErr_NoMemory() : NULL;
    }
    return (PyObject *)t;
}

/* Empties the slots; the entries are released after, as releasing one may run code that uses the table. */
static void
RecentTable_empty(RecentTable *t)
{
    if (t->slots == NULL)
        return;
    size_t size = t->mask + 1;
    Slot *old = t->slots;
    Slot *fresh = PyMem_Calloc(size, sizeof(Slot));
    if (fresh == NULL) {  /* keep the old array, emptied in place */
        for (size_t i = 0; i < size; i++) {
            Entry *e = old[i].entry;
            old[i].entry = NULL;
            entry_release(e);
        }
        t->used = 0;
        return;
    }
    t->slots = fresh;
    t->used = 0;
    for (size_t i = 0; i < size; i++)
        entry_release(old[i].entry);
    PyMem_Free(old);
}

static int
RecentTable_traverse(RecentTable *t, visitproc visit, void *arg)
{
    Py_VISIT(t->other);
    if (t->slots != NULL) {
        for (size_t i = 0; i <= t->mask; i++) {
            Entry *e = t->slots[i].entry;
            if (e == NULL)
                continue;
            Py_VISIT(e->translated);
            Py_VISIT(e->head);
            for (Py_ssize_t j = 0; j < e->n; j++) {
                Py_VISIT(e->legs[j].nic);
                Py_VISIT(e->legs[j].key);
                Py_VISIT(e->legs[j].timeouts);
                Py_VISIT(e->legs[j].table);
            }
        }
    }
    return 0;
}

static int
RecentTable_clear_refs(RecentTable *t)
{
    RecentTable_empty(t);
    Py_CLEAR(t->other);
    return 0;
}

static void
RecentTable_dealloc(RecentTable *t)
{
    PyObject_GC_UnTrack(t);
    RecentTable_clear_refs(t);
    PyMem_Free(t->slots);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static Py_ssize_t
RecentTable_length(RecentTable *t)
{
    return t->used + (t->other != NULL ? PyDict_GET_SIZE(t->other) : 0);
}

/* The entry as a tuple (a new reference), or NULL (with an exception set on error). */
static PyObject *
RecentTable_find(RecentTable *t, PyObject *key)
{
    uint32_t src, dst;
    uint16_t sport, dport;
    uint8_t proto;
    if (t->slots == NULL || t->other == NULL) {
        PyErr_SetString(PyExc_TypeError, "the recent-flow table was cleared by the collector");
        return NULL;
    }
    int v4 = numbers_of(key, &src, &dst, &sport, &dport, &proto);
    if (v4 < 0)
        return NULL;
    if (v4 == 0)
        return Py_XNewRef(PyDict_GetItemWithError(t->other, key));
    Slot *s = slot_of(t, src, dst, sport, dport, proto);
    return s->entry != NULL ? entry_tuple(s) : NULL;
}

static PyObject *
RecentTable_subscript(RecentTable *t, PyObject *key)
{
    PyObject *entry = RecentTable_find(t, key);
    if (entry == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, key);
    return entry;
}

/* Files the entry (taking it over) under the key's numbers, in place of any entry there. */
static int
insert(RecentTable *t, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto, Entry *e)
{
    if ((size_t)(t->used + 1) * 2 > t->mask + 1 && RecentTable_grow(t) < 0) {
        entry_release(e);
        return -1;
    }
    e->src = src;
    e->dst = dst;
    e->sport = sport;
    e->dport = dport;
    e->proto = proto;
    Slot *s = slot_of(t, src, dst, sport, dport, proto);
    Entry *old = s->entry;
    if (old == NULL)
        t->used += 1;
    s->entry = e;
    entry_release(old);
    return 0;
}

static int
RecentTable_ass_subscript(RecentTable *t, PyObject *key, PyObject *entry)
{
    uint32_t src, dst;
    uint16_t sport, dport;
    uint8_t proto;
    if (entry == NULL) {
        PyErr_SetString(PyExc_TypeError, "recent flows are replaced or all cleared, never deleted one by one");
        return -1;
    }
    if (t->slots == NULL || t->other == NULL) {
        PyErr_SetString(PyExc_TypeError, "the recent-flow table was cleared by the collector");
        return -1;
    }
    int v4 = numbers_of(key, &src, &dst, &sport, &dport, &proto);
    if (v4 < 0)
        return -1;
    if (v4 == 0)
        return PyDict_SetItem(t->other, key, entry);
    Entry *e = entry_of(entry);
    return e != NULL ? insert(t, src, dst, sport, dport, proto, e) : -1;
}

static int
RecentTable_contains(RecentTable *t, PyObject *key)
{
    PyObject *entry = RecentTable_find(t, key);
    Py_XDECREF(entry);
    return entry != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
}

static PyObject *
RecentTable_get(RecentTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key[, default])");
        return NULL;
    }
    PyObject *entry = RecentTable_find(t, args[0]);
    if (entry == NULL && PyErr_Occurred())
        return NULL;
    return entry != NULL ? entry : Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *
RecentTable_clear_method(RecentTable *t, PyObject *unused)
{
    RecentTable_empty(t);
    if (t->other != NULL)
        PyDict_Clear(t->other);
    Py_RETURN_NONE;
}

static PyObject *
RecentTable_items(RecentTable *t, PyObject *unused)
{
    if (t->slots == NULL || t->other == NULL) {
        PyErr_SetString(PyExc_TypeError, "the recent-flow table was cleared by the collector");
        return NULL;
    }
    PyObject *items = PyList_New(0);
    for (size_t i = 0; items != NULL && i <= t->mask; i++) {
        Slot *s = &t->slots[i];
        if (s->entry == NULL)
            continue;
        PyObject *entry = entry_tuple(s);
        Entry *e = s->entry;
        PyObject *item = entry == NULL ? NULL : Py_BuildValue("((BBkHkH)N)", e->proto, 4, (unsigned long)e->src,
                                                              e->sport, (unsigned long)e->dst, e->dport, entry);
        if (item == NULL || PyList_Append(items, item) < 0)
            Py_CLEAR(items);
        Py_XDECREF(item);
    }
    PyObject *others = items != NULL ? PyDict_Items(t->other) : NULL;
    if (others != NULL && PyList_SetSlice(items, PyList_GET_SIZE(items), PyList_GET_SIZE(items), others) < 0)
        Py_CLEAR(items);
    if (others == NULL)
        Py_CLEAR(items);
    Py_XDECREF(others);
    return items;
}



static PyMethodDef RecentTable_methods[] = {

    {"items", (PyCFunction)RecentTable_items, METH_NOARGS, "a list of (key, entry)"},
    {"get", (PyCFunction)(void (*)(void))RecentTable_get, METH_FASTCALL, "the entry of a key, or the default"},
    {"clear", (PyCFunction)RecentTable_clear_method, METH_NOARGS, "forget every entry"},
    {NULL},
};

static PyMappingMethods RecentTable_as_mapping = {
    .mp_length = (lenfunc)RecentTable_length,
    .mp_subscript = (binaryfunc)RecentTable_subscript,
    .mp_ass_subscript = (objobjargproc)RecentTable_ass_subscript,
};

static PySequenceMethods RecentTable_as_sequence = {
    .sq_contains = (objobjproc)RecentTable_contains,
};

static PyTypeObject RecentTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataplane._fastpath.RecentTable",
    .tp_basicsize = sizeof(RecentTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The recent-flow table: key → (legs, translated, head), IPv4 ones held as C structs.",
    .tp_new = RecentTable_new,
    .tp_dealloc = (destructor)RecentTable_dealloc,
    .tp_traverse = (traverseproc)RecentTable_traverse,
    .tp_clear = (inquiry)RecentTable_clear_refs,
    .tp_methods = RecentTable_methods,
    .tp_as_mapping = &RecentTable_as_mapping,
    .tp_as_sequence = &RecentTable_as_sequence,
};

/* -- ShardFilter ----------------------------------------------------------------------------- */

/* shards.FrameShards for the records pass_records walks: the shard of an Ethernet IPv4 frame that is
   not ICMP, from its two addresses, as shards.pair_shard computes it (IPv4 parts of the Shards only). */
typedef struct {
    PyObject_HEAD
    long index, count;
    uint32_t (*inside)[2];    /* inclusive IPv4 ranges */
    Py_ssize_t n_inside;
    uint32_t *translated, *pinned;  /* sorted */
    Py_ssize_t n_translated, n_pinned;
    uint32_t (*aliases)[2];   /* (public, private), sorted by public */
    Py_ssize_t n_aliases;
} ShardFilter;

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The IPv4 members of a set of ip_keys, sorted; NULL with an exception on error. */
static uint32_t *
v4_members(PyObject *set, Py_ssize_t *n)
{
    PyObject *items = PySequence_List(set);
    if (items == NULL)
        return NULL;
    uint32_t *out = PyMem_Malloc((PyList_GET_SIZE(items) + 1) * sizeof(uint32_t));
    *n = 0;
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(items); i++) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(items, i), &overflow);
        if (v == -1 && PyErr_Occurred()) {
            PyMem_Free(out);
            out = NULL;
        } else if (!overflow && v >= 0 && v <= 0xFFFFFFFFLL) {
            out[(*n)++] = (uint32_t)v;
        }
    }
    Py_DECREF(items);
    if (out == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    qsort(out, *n, sizeof(uint32_t), cmp_u32);
    return out;
}

static int
has(const uint32_t *sorted, Py_ssize_t n, uint32_t v)
{
    return bsearch(&v, sorted, n, sizeof(uint32_t), cmp_u32) != NULL;
}

static int
ShardFilter_init(ShardFilter *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"index", "count", "inside", "aliases", "translated", "pinned", NULL};
    PyObject *inside, *aliases, *translated, *pinned;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "llOO!OO", names, &self->index, &self->count, &inside, &PyDict_Type,
                                     &aliases, &translated, &pinned))
        return -1;
    if (self->count < 1 || self->index < 0 || self->index >= self->count) {
        PyErr_SetString(PyExc_ValueError, "a shard index must be within its count");
        return -1;
    }
    PyObject *ranges = PySequence_List(inside), *pairs = PyDict_Items(aliases);
    if (ranges == NULL || pairs == NULL) {
        Py_XDECREF(ranges);
        Py_XDECREF(pairs);
        return -1;
    }
    PyMem_Free(self->inside);
    PyMem_Free(self->aliases);
    self->inside = PyMem_Malloc((PyList_GET_SIZE(ranges) + 1) * sizeof(*self->inside));
    self->aliases = PyMem_Malloc((PyList_GET_SIZE(pairs) + 1) * sizeof(*self->aliases));
    self->n_inside = self->n_aliases = 0;
    int ok = self->inside != NULL && self->aliases != NULL;
    for (Py_ssize_t i = 0; ok && i < PyList_GET_SIZE(ranges); i++) {
        PyObject *range = PyList_GET_ITEM(ranges, i), *first_, *last_;
        ok = PyArg_ParseTuple(range, "O!O!", &PyLong_Type, &first_, &PyLong_Type, &last_);
        int o1 = 0, o2 = 0;
        long long first = ok ? PyLong_AsLongLongAndOverflow(first_, &o1) : 0;
        long long last = ok ? PyLong_AsLongLongAndOverflow(last_, &o2) : 0;
        ok = ok && !PyErr_Occurred();
        if (ok && !o1 && first >= 0 && first <= 0xFFFFFFFFLL) {  /* an IPv6 range's keys are past 2**128 */
            self->inside[self->n_inside][0] = (uint32_t)first;
            self->inside[self->n_inside++][1] = o2 || last > 0xFFFFFFFFLL ? 0xFFFFFFFFU : (uint32_t)last;
        }
    }
    for (Py_ssize_t i = 0; ok && i < PyList_GET_SIZE(pairs); i++) {
        PyObject *public_ = PyTuple_GET_ITEM(PyList_GET_ITEM(pairs, i), 0);
        PyObject *private_ = PyTuple_GET_ITEM(PyList_GET_ITEM(pairs, i), 1);
        int o1, o2;
        long long a = PyLong_AsLongLongAndOverflow(public_, &o1), b = PyLong_AsLongLongAndOverflow(private_, &o2);
        ok = !PyErr_Occurred();
        if (ok && !o1 && !o2 && a >= 0 && a <= 0xFFFFFFFFLL && b >= 0 && b <= 0xFFFFFFFFLL) {
            self->aliases[self->n_aliases][0] = (uint32_t)a;
            self->aliases[self->n_aliases++][1] = (uint32_t)b;
        }
    }
    Py_DECREF(ranges);
    Py_DECREF(pairs);
    if (!ok) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    qsort(self->aliases, self->n_aliases, sizeof(*self->aliases), cmp_u32);  /* by public: the first member */
    PyMem_Free(self->translated);
    PyMem_Free(self->pinned);
    self->translated = v4_members(translated, &self->n_translated);
    self->pinned = self->translated != NULL ? v4_members(pinned, &self->n_pinned) : NULL;
    return self->pinned != NULL ? 0 : -1;
}

static void
ShardFilter_dealloc(ShardFilter *self)
{
    PyMem_Free(self->inside);
    PyMem_Free(self->aliases);
    PyMem_Free(self->translated);
    PyMem_Free(self->pinned);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
is_inside(const ShardFilter *f, uint32_t a)
{
    if (has(f->translated, f->n_translated, a))
        return 1;
    for (Py_ssize_t i = 0; i < f->n_inside; i++) {
        if (f->inside[i][0] <= a && a <= f->inside[i][1])
            return 1;
    }
    return 0;
}

static uint32_t
alias(const ShardFilter *f, uint32_t a)
{
    uint32_t (*found)[2] = bsearch(&a, f->aliases, f->n_aliases, sizeof(*f->aliases), cmp_u32);
    return found != NULL ? (*found)[1] : a;
}

static long
spread(uint64_t key, long count)
{
    return (long)(((key * 0x9E3779B97F4A7C15ULL) >> 32) % (uint64_t)count);
}

static long
pair_shard(const ShardFilter *f, uint32_t a, uint32_t b)
{
    int a_inside = is_inside(f, a), b_inside = is_inside(f, b);
    if (a_inside != b_inside)
        return spread(a_inside ? b : a, f->count);
    if (a_inside && (has(f->pinned, f->n_pinned, a) || has(f->pinned, f->n_pinned, b)))
        return 0;
    a = alias(f, a);
    b = alias(f, b);
    uint64_t low = a <= b ? a : b, high = a <= b ? b : a;
    return spread(low * 31 + high, f->count);
}

/* The shard of a frame (-1: not an Ethernet IPv4 frame other than ICMP, which the Python side keys). */
static long
frame_shard(const ShardFilter *f, const unsigned char *b, Py_ssize_t n)
{
    if (n < 34 || b[12] != 8 || b[13] != 0 || b[23] == 1)
        return -1;
    uint32_t a = (uint32_t)b[26] << 24 | (uint32_t)b[27] << 16 | (uint32_t)b[28] << 8 | b[29];
    uint32_t d = (uint32_t)b[30] << 24 | (uint32_t)b[31] << 16 | (uint32_t)b[32] << 8 | b[33];
    return f->count == 1 ? 0 : pair_shard(f, a, d);
}

static PyObject *
ShardFilter_shard(ShardFilter *self, PyObject *frame)
{
    if (!PyBytes_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "shard(frame): frame must be bytes");
        return NULL;
    }
    return PyLong_FromLong(frame_shard(self, (const unsigned char *)PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame)));
}

static PyMethodDef ShardFilter_methods[] = {
    {"shard", (PyCFunction)ShardFilter_shard, METH_O, "the shard of an Ethernet frame, or -1 when C does not key it"},
    {NULL},
};

static PyTypeObject ShardFilterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataplane._fastpath.ShardFilter",
    .tp_basicsize = sizeof(ShardFilter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "shards.FrameShards in C, for the records pass_records walks: ShardFilter(index, count, inside, "
              "aliases, translated, pinned)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ShardFilter_init,
    .tp_dealloc = (destructor)ShardFilter_dealloc,
    .tp_methods = ShardFilter_methods,
};

/* -- Rules: a classifier.Classifier's IPv4 lookup ------------------------------------------ */

/* The classifier's tables as plain arrays, for the C decision of new flows: each field's intervals
   (sorted starts, the first 0) with the rule set of each, the sets as bit arrays of `words` 64-bit
   words (bit i: the i-th rule in evaluation order), and which rules deny. Built by
   Classifier.c_rules; tests/test_classifier.py proves its lookup is the Classifier's. */
enum { SRC, DST, SPORT, DPORT, FIELDS };

typedef struct {
    PyObject_HEAD
    Py_ssize_t words, n_sets, n_rules;
    uint64_t *sets;
    uint32_t *starts[FIELDS];
    int32_t *ids[FIELDS];
    Py_ssize_t counts[FIELDS];
    int32_t protos[256];
    int32_t portless;
    char *denies;
} Rules;

static void
Rules_free(Rules *self)
{
    PyMem_Free(self->sets);
    self->sets = NULL;
    for (int f = 0; f < FIELDS; f++) {
        PyMem_Free(self->starts[f]);
        PyMem_Free(self->ids[f]);
        self->starts[f] = NULL;
        self->ids[f] = NULL;
        self->counts[f] = 0;
    }
    PyMem_Free(self->denies);
    self->denies = NULL;
}

static int
set_id_ok(Rules *self, long id)
{
    if (id >= 0 && id < self->n_sets)
        return 1;
    PyErr_Format(PyExc_ValueError, "rule set %ld is not one of the %zd given", id, self->n_sets);
    return 0;
}

/* One field's intervals from (starts, ids): lists of the same length, starts ascending from 0. */
static int
Rules_field(Rules *self, int f, PyObject *starts, PyObject *ids, unsigned long top)
{
    if (!PyList_Check(starts) || !PyList_Check(ids) || PyList_GET_SIZE(starts) != PyList_GET_SIZE(ids) ||
            PyList_GET_SIZE(starts) == 0) {
        PyErr_SetString(PyExc_TypeError, "a field's interval starts and set ids must be lists of one length");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(starts);
    self->starts[f] = PyMem_Calloc(n, sizeof(uint32_t));
    self->ids[f] = PyMem_Calloc(n, sizeof(int32_t));
    if (self->starts[f] == NULL || self->ids[f] == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->counts[f] = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long start = PyLong_AsUnsignedLong(PyList_GET_ITEM(starts, i));
        long id = PyLong_AsLong(PyList_GET_ITEM(ids, i));
        if (PyErr_Occurred())
            return -1;
        if (start > top || (i == 0 && start != 0) || (i > 0 && start <= self->starts[f][i - 1])) {
            PyErr_SetString(PyExc_ValueError, "interval starts must ascend from 0 within the field");
            return -1;
        }
        if (!set_id_ok(self, id))
            return -1;
        self->starts[f][i] = (uint32_t)start;
        self->ids[f][i] = (int32_t)id;
    }
    return 0;
}

static int
Rules_init(Rules *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"sets", "src", "dst", "sport", "dport", "protos", "portless", "denies", NULL};
    PyObject *sets, *fields[FIELDS], *protos, *denies;
    long portless;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!O!O!lO!", names, &PyList_Type, &sets, &PyTuple_Type,
                                     &fields[SRC], &PyTuple_Type, &fields[DST], &PyTuple_Type, &fields[SPORT],
                                     &PyTuple_Type, &fields[DPORT], &PyList_Type, &protos, &portless, &PyBytes_Type,
                                     &denies))
        return -1;
    Rules_free(self);
    self->n_rules = PyBytes_GET_SIZE(denies);
    self->words = self->n_rules / 64 + 1;
    self->n_sets = PyList_GET_SIZE(sets);
    self->sets = PyMem_Calloc(self->n_sets * self->words, sizeof(uint64_t));
    self->denies = PyMem_Malloc(self->n_rules + 1);
    if (self->sets == NULL || self->denies == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->denies, PyBytes_AS_STRING(denies), self->n_rules);
    /* each set as little-endian bytes, `words` * 8 of them: bit i of the int is rule i */
    for (Py_ssize_t s = 0; s < self->n_sets; s++) {
        PyObject *bits = PyList_GET_ITEM(sets, s);
        if (!PyBytes_Check(bits) || PyBytes_GET_SIZE(bits) != self->words * 8) {
            PyErr_Format(PyExc_ValueError, "each rule set must be %zd bytes", self->words * 8);
            return -1;
        }
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(bits);
        for (Py_ssize_t w = 0; w < self->words; w++) {
            uint64_t word = 0;
            for (int k = 7; k >= 0; k--)
                word = word << 8 | b[w * 8 + k];
            self->sets[s * self->words + w] = word;
        }
    }
    static const unsigned long tops[FIELDS] = {0xFFFFFFFFUL, 0xFFFFFFFFUL, 65535, 65535};
    for (int f = 0; f < FIELDS; f++) {
        if (PyTuple_GET_SIZE(fields[f]) != 2 ||
                Rules_field(self, f, PyTuple_GET_ITEM(fields[f], 0), PyTuple_GET_ITEM(fields[f], 1), tops[f]) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "each field must be (interval starts, set ids)");
            return -1;
        }
    }
    if (PyList_GET_SIZE(protos) != 256) {
        PyErr_SetString(PyExc_ValueError, "protos must give the set id of each of the 256 IP protocols");
        return -1;
    }
    for (int p = 0; p < 256; p++) {
        long id = PyLong_AsLong(PyList_GET_ITEM(protos, p));
        if ((id == -1 && PyErr_Occurred()) || !set_id_ok(self, id))
            return -1;
        self->protos[p] = (int32_t)id;
    }
    if (!set_id_ok(self, portless))
        return -1;
    self->portless = (int32_t)portless;
    return 0;
}

static inline Py_ssize_t
interval_of(const uint32_t *starts, Py_ssize_t n, uint32_t value)
{
    Py_ssize_t lo = 1, hi = n;  /* starts[0] is 0: the last start at or below value */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (starts[mid] <= value)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

static inline const uint64_t *
field_set(const Rules *r, int f, uint32_t value)
{
    return r->sets + (Py_ssize_t)r->ids[f][interval_of(r->starts[f], r->counts[f], value)] * r->words;
}

/* Classifier.lookup for IPv4: the index of the first matching rule, or -1. */
static Py_ssize_t
rules_lookup(const Rules *r, int proto, uint32_t src, unsigned sport, uint32_t dst, unsigned dport)
{
    const uint64_t *p = r->sets + (Py_ssize_t)r->protos[proto & 0xFF] * r->words;
    const uint64_t *s = field_set(r, SRC, src), *d = field_set(r, DST, dst), *sp, *dp;
    if (proto == 6 || proto == 17) {
        sp = field_set(r, SPORT, sport);
        dp = field_set(r, DPORT, dport);
    } else {
        sp = dp = r->sets + (Py_ssize_t)r->portless * r->words;
    }
    for (Py_ssize_t w = 0; w < r->words; w++) {
        uint64_t m = p[w] & s[w] & d[w] & sp[w] & dp[w];
        if (m) {
            Py_ssize_t i = w * 64 + __builtin_ctzll(m);
            return i < r->n_rules ? i : -1;
        }
    }
    return -1;
}

static PyObject *
Rules_lookup(Rules *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->sets == NULL) {
        PyErr_SetString(PyExc_ValueError, "the Rules were not initialised");
        return NULL;
    }
    unsigned long v[5];
    static const unsigned long tops[5] = {255, 0xFFFFFFFFUL, 65535, 0xFFFFFFFFUL, 65535};
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "lookup(proto, src, sport, dst, dport)");
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        v[i] = PyLong_AsUnsignedLong(args[i]);
        if (PyErr_Occurred())
            return NULL;
        if (v[i] > tops[i]) {
            PyErr_SetString(PyExc_ValueError, "a field of the IPv4 5-tuple is out of range");
            return NULL;
        }
    }
    return PyLong_FromSsize_t(rules_lookup(self, (int)v[0], (uint32_t)v[1], (unsigned)v[2], (uint32_t)v[3],
                                           (unsigned)v[4]));
}

static void
Rules_dealloc(Rules *self)
{
    Rules_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Rules_methods[] = {
    {"lookup", (PyCFunction)(void (*)(void))Rules_lookup, METH_FASTCALL,
     "lookup(proto, src, sport, dst, dport) -> the index of the first matching rule of an IPv4 5-tuple, or -1"},
    {NULL},
};

static PyTypeObject RulesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataplane._fastpath.Rules",
    .tp_basicsize = sizeof(Rules),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A Classifier's IPv4 lookup in C: Rules(sets, src, dst, sport, dport, protos, portless, denies)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Rules_init,
    .tp_dealloc = (destructor)Rules_dealloc,
    .tp_methods = Rules_methods,
};

/* -- FastPath ------------------------------------------------------------------------------ */

#define TCP_STATES 8
#define TIMEOUT_SLOTS 64

typedef struct {
    PyObject_HEAD
    RecentTable *recent;   /* key → (legs, translated, head) */
    PyObject *moves;       /* tuple of 256 dicts: state → (next when the responder sent, when the initiator sent) */
    PyObject *closed;      /* TcpState.CLOSED */
    PyObject *packet_type; /* decode.Packet */
    PyObject *verdict_type;/* pipeline.Verdict */
    PyObject *nics;        /* dict: IPv4 address → (NIC, its table's dict of records, the table, its TCP
                              timeouts by state, its UDP timeout, the NIC's name) */
    PyObject *translated;  /* frozenset: the IPv4 public IPs and load-balancer frontends */
    PyObject *publics;     /* dict: a NIC's IPv4 public IP → (its nics entry, its private address) */
    PyObject *new_translated; /* Dataplane._new_translated(packet, ts, key) */
    PyObject *new_at_nic;  /* Dataplane._new_at_nic(packet, ts, key, nic, Direction.INBOUND, False) */
    PyObject *inbound;     /* Direction.INBOUND */
    /* the decision of new inbound flows at one NIC (decide_new_flows), or NULL: */
    PyObject *chain_of;    /* Dataplane._chain_for_c(nic, outbound) → (versions, the scenario, Rules of each NSG,
                              memo) */
    PyObject *memo_of;     /* Dataplane._decided_in_c(nic, slot) → (deny, policy.LegResult, direction, NIC name,
                              conntrack.Outcome) */
    PyObject *between_of;  /* Dataplane._decided_between_in_c(source NIC, destination NIC, slots) → the same, with
                              the Outcome at each NIC */
    PyObject *first_states;/* tuple: the TCP state of a flow whose first packet has these flags */
    PyObject *active;      /* conntrack.Other.ACTIVE: a UDP flow's state */
    PyObject *chains[2];   /* dicts, inbound and outbound: NIC name → what chain_of gave, while its NSGs are
                              those it names */
    PyObject *pairs;       /* dict: (source, destination NIC name) → (outbound chain, inbound chain, memo) */
    PyObject *tail_of;     /* verdict_lines: Python's JSON after a verdict line's flow, and the tails made */
    PyObject *tails;
    int separated;         /* verdict_lines: the lines are tab-separated (Verdict.tsv_line), for Parquet */
    uint32_t *platform;    /* the platform's IPv4 addresses, which the policy treats apart */
    Py_ssize_t n_platform;
    long long packets;     /* packets taken here: Dataplane.stats folds them in */
    long long allowed;     /* of which passed here as packets of recent flows or allowed new flows */
    long long denied;      /* of which denied here as new flows */
    long long created;     /* flow records made here */
    double next_sweep;     /* the dataplane sweeps its tables when a packet reaches this time */
    PyObject *started;     /* a flow listener's flow_started(NIC name, record, ts), told of each record made here,
                              or NULL */
    int new_flows;         /* what pass_records does at a new flow's first packet: WALK_ON, or STOP_BEFORE it (its
                              caller processes it), or STOP_AFTER_DENY: decide it, and stop when it is denied (its
                              verdict the last of the walk's) */
    Py_ssize_t walk_taken; /* while pass_records decides a new flow, the records its walk took before it, else -1:
                              a listener told of the flow learns its packet's place (workers' flow logs) */
    /* The moves by index, read once at init: a known TCP flow's packet finds its next state and that state's
       timeout without the two dict lookups per leg that were a sixth of its time (bench/). */
    PyObject *states[TCP_STATES];        /* the states of moves[0], in its order; NULL past them */
    signed char next[256][TCP_STATES][2]; /* next[flags][state][forward]: the next state's index */
    struct {
        PyObject *timeouts;              /* a NIC's dict of TCP timeouts by state (Timeouts.tcp), held */
        double seconds[TCP_STATES];      /* of each state, NaN until read */
    } timeouts[TIMEOUT_SLOTS];           /* by the dict's address: Timeouts never changes a dict it made */
} FastPath;

enum { WALK_ON, STOP_BEFORE, STOP_AFTER_DENY };

static PyObject *s_value, *s_reschedule, *s_allow, *s_flow, *s_empty, *s_empty_tuple, *s_wheel, *s_due, *s_version,
    *s_max_flows, *s_by_key, *s_json_line, *s_tsv_line, *s_groups;
static PyObject *heappush, *heappop;
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
state_index(FastPath *self, PyObject *state)
{
    for (int i = 0; i < TCP_STATES && self->states[i] != NULL; i++)
        if (self->states[i] == state)
            return i;
    return -1;
}

/* The moves by index (FastPath.next), and no timeout read yet. */
static int
index_moves(FastPath *self)
{
    for (int i = 0; i < TCP_STATES; i++)
        Py_CLEAR(self->states[i]);
    for (int i = 0; i < TIMEOUT_SLOTS; i++)
        Py_CLEAR(self->timeouts[i].timeouts);
    PyObject *first = PyTuple_GET_ITEM(self->moves, 0), *state, *move;
    Py_ssize_t pos = 0, n = 0;
    if (PyDict_GET_SIZE(first) > TCP_STATES) {
        PyErr_Format(PyExc_TypeError, "moves know more than %d TCP states", TCP_STATES);
        return -1;
    }
    while (PyDict_Next(first, &pos, &state, NULL))
        self->states[n++] = Py_NewRef(state);
    for (int flags = 0; flags < 256; flags++) {
        PyObject *by_state = PyTuple_GET_ITEM(self->moves, flags);
        int complete = PyDict_GET_SIZE(by_state) == n;
        for (int from = 0; complete && from < n; from++) {
            move = PyDict_GetItemWithError(by_state, self->states[from]);
            complete = move != NULL && PyTuple_Check(move) && PyTuple_GET_SIZE(move) == 2;
            for (int forward = 0; complete && forward < 2; forward++) {
                int to = state_index(self, PyTuple_GET_ITEM(move, forward));
                self->next[flags][from][forward] = (signed char)to;
                complete = to >= 0;
            }
        }
        if (!complete) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "moves must map each flags byte's states, the same ones, to "
                                "(next state, next state)");
            for (int i = 0; i < TCP_STATES; i++)  /* no state is known by index: each goes by the dicts */
                Py_CLEAR(self->states[i]);
            return -1;
        }
    }
    return 0;
}

/* A NIC's timeout of TCP state `to`, read once for each dict of timeouts; NaN where it is not a float
   (pass_recent's generic path then reads it and says what is wrong). */
static double
tcp_timeout(FastPath *self, PyObject *timeouts, int to)
{
    size_t slot = ((uintptr_t)timeouts >> 4) % TIMEOUT_SLOTS;
    if (self->timeouts[slot].timeouts != timeouts) {
        if (!PyDict_CheckExact(timeouts))
            return NAN;
        Py_XSETREF(self->timeouts[slot].timeouts, Py_NewRef(timeouts));
        for (int i = 0; i < TCP_STATES; i++)
            self->timeouts[slot].seconds[i] = NAN;
    }
    double seconds = self->timeouts[slot].seconds[to];
    if (isnan(seconds)) {
        PyObject *value = PyDict_GetItemWithError(timeouts, self->states[to]);
        if (value == NULL || !PyFloat_CheckExact(value)) {
            PyErr_Clear();
            return NAN;
        }
        seconds = self->timeouts[slot].seconds[to] = PyFloat_AS_DOUBLE(value);
    }
    return seconds;
}

static int
FastPath_init(FastPath *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"recent", "moves", "closed", "packet_type", "verdict_type", "nics", "new_at_nic",
                            "inbound", "translated", "publics", "new_translated", NULL};
    PyObject *recent, *moves, *closed, *packet_type, *verdict_type, *nics, *new_at_nic, *inbound, *translated;
    PyObject *publics, *new_translated;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OO!O!O!OOO!O!O", names, &RecentTableType, &recent,
                                     &PyList_Type, &moves, &closed, &PyType_Type, &packet_type, &PyType_Type,
                                     &verdict_type, &PyDict_Type, &nics, &new_at_nic, &inbound, &PyFrozenSet_Type,
                                     &translated, &PyDict_Type, &publics, &new_translated))
        return -1;
    if (!PyCallable_Check(new_translated)) {
        PyErr_SetString(PyExc_TypeError, "new_translated must be callable");
        return -1;
    }
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
    if (index_moves(self) < 0)
        return -1;
    Py_INCREF(closed); Py_XSETREF(self->closed, closed);
    Py_INCREF(packet_type); Py_XSETREF(self->packet_type, packet_type);
    Py_INCREF(verdict_type); Py_XSETREF(self->verdict_type, verdict_type);
    Py_INCREF(nics); Py_XSETREF(self->nics, nics);
    Py_INCREF(new_at_nic); Py_XSETREF(self->new_at_nic, new_at_nic);
    Py_INCREF(inbound); Py_XSETREF(self->inbound, inbound);
    Py_INCREF(translated); Py_XSETREF(self->translated, translated);
    Py_INCREF(publics); Py_XSETREF(self->publics, publics);
    Py_INCREF(new_translated); Py_XSETREF(self->new_translated, new_translated);
    Py_INCREF(recent); Py_XSETREF(self->recent, (RecentTable *)recent);  /* last: set, it says every field is */
    self->packets = self->allowed = self->denied = self->created = 0;
    self->next_sweep = -Py_HUGE_VAL;
    self->walk_taken = -1;
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
    Py_VISIT(self->translated);
    Py_VISIT(self->publics);
    Py_VISIT(self->new_translated);
    Py_VISIT(self->chain_of);
    Py_VISIT(self->memo_of);
    Py_VISIT(self->between_of);
    Py_VISIT(self->first_states);
    Py_VISIT(self->active);
    Py_VISIT(self->chains[0]);
    Py_VISIT(self->chains[1]);
    Py_VISIT(self->pairs);
    Py_VISIT(self->tail_of);
    Py_VISIT(self->tails);
    Py_VISIT(self->started);
    for (int i = 0; i < TCP_STATES; i++)
        Py_VISIT(self->states[i]);
    for (int i = 0; i < TIMEOUT_SLOTS; i++)
        Py_VISIT(self->timeouts[i].timeouts);
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
    Py_CLEAR(self->translated);
    Py_CLEAR(self->publics);
    Py_CLEAR(self->new_translated);
    Py_CLEAR(self->chain_of);
    Py_CLEAR(self->memo_of);
    Py_CLEAR(self->between_of);
    Py_CLEAR(self->first_states);
    Py_CLEAR(self->active);
    Py_CLEAR(self->chains[0]);
    Py_CLEAR(self->chains[1]);
    Py_CLEAR(self->pairs);
    Py_CLEAR(self->tail_of);
    Py_CLEAR(self->tails);
    Py_CLEAR(self->started);
    for (int i = 0; i < TCP_STATES; i++)
        Py_CLEAR(self->states[i]);
    for (int i = 0; i < TIMEOUT_SLOTS; i++)
        Py_CLEAR(self->timeouts[i].timeouts);
    return 0;
}

static void
FastPath_dealloc(FastPath *self)
{
    PyObject_GC_UnTrack(self);
    FastPath_clear(self);
    PyMem_Free(self->platform);
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
parse_raw(const unsigned char *b, Py_ssize_t n, Common *c)
{
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

static int
parse(PyObject *frame, Common *c)
{
    return PyBytes_CheckExact(frame) &&
        parse_raw((const unsigned char *)PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), c);
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

/* One NIC's part of a recent-flow entry: its nics entry's NIC, timeouts for the protocol and table. */
typedef struct {
    PyObject *nic, *timeouts, *table;
    Record *record;
} LegOf;

/* A flow's part at the NIC of `at` (its nics entry), with the NIC's timeouts for the flow's protocol. */
static LegOf
leg_at(PyObject *at, const Common *c, Record *record)
{
    return (LegOf){PyTuple_GET_ITEM(at, 0), PyTuple_GET_ITEM(at, c->proto == 6 ? 3 : 4), PyTuple_GET_ITEM(at, 2),
                   record};
}

/* The two entries of an untranslated flow over n NICs in its first packet's order (the packet's key,
   its first leg `forward`, with `head`; the reversed key, the legs backwards, with `head_back`), as
   Conntrack.remember makes them; the table is emptied first when full. */
static int
remember_legs(RecentTable *t, const Common *c, const LegOf *legs, Py_ssize_t n, int forward, PyObject *head,
              PyObject *head_back)
{
    if (RecentTable_length(t) >= t->limit) {
        PyObject *done = RecentTable_clear_method(t, NULL);
        if (done == NULL)
            return -1;
        Py_DECREF(done);
    }
    for (int backward = 0; backward <= 1; backward++) {
        Entry *e = PyMem_Malloc(sizeof(Entry) + n * sizeof(EntryLeg));
        if (e == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        e->refs = 1;
        e->n = n;
        e->translated = Py_NewRef(Py_None);
        e->head = Py_NewRef(backward ? head_back : head);
        e->line_state = e->line_tail = NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            const LegOf *from = &legs[backward ? n - 1 - i : i];
            EntryLeg *leg = &e->legs[i];
            leg->nic = Py_NewRef(from->nic);
            leg->key = NULL;  /* the slot's */
            leg->record = (Record *)Py_NewRef((PyObject *)from->record);
            leg->forward = backward ? !forward : forward;
            leg->timeouts = Py_NewRef(from->timeouts);
            leg->table = Py_NewRef(from->table);
        }
        uint32_t src = (uint32_t)c->src, dst = (uint32_t)c->dst;
        uint16_t sport = (uint16_t)c->sport, dport = (uint16_t)c->dport;
        int done = backward ? insert(t, dst, src, dport, sport, (uint8_t)c->proto, e)
                            : insert(t, src, dst, sport, dport, (uint8_t)c->proto, e);
        if (done < 0)
            return -1;
    }
    return 0;
}

static int
nic_entry_ok(PyObject *at)
{
    if (PyTuple_Check(at) && PyTuple_GET_SIZE(at) == 6 && PyDict_Check(PyTuple_GET_ITEM(at, 1)) &&
            PyDict_Check(PyTuple_GET_ITEM(at, 3)) && PyUnicode_Check(PyTuple_GET_ITEM(at, 5)))
        return 1;
    PyErr_SetString(PyExc_TypeError, "nics must map an address to (NIC, dict of its flow records, table, TCP "
                    "timeouts, UDP timeout, NIC name)");
    return 0;
}

/* A packet between one NIC and an address outside the scenario (neither a NIC's nor a translated one)
   whose flow has a live, untranslated record at that NIC and no recent entry: both directions are
   remembered, as Dataplane._packet remembers them at such a flow's second packet. 1 when remembered,
   0 when the Python path decides, -1 on error. */
static int
remember_known(FastPath *self, const Common *c, double ts)
{
    PyObject *src = PyLong_FromUnsignedLong(c->src), *dst = PyLong_FromUnsignedLong(c->dst);
    PyObject *at_src = NULL, *at_dst = NULL, *canonical = NULL;
    int result = -1;
    if (src == NULL || dst == NULL)
        goto done;
    at_src = PyDict_GetItemWithError(self->nics, src);
    if (at_src == NULL && PyErr_Occurred())
        goto done;
    at_dst = PyDict_GetItemWithError(self->nics, dst);
    if (at_dst == NULL && PyErr_Occurred())
        goto done;
    result = 0;
    if ((at_src == NULL) == (at_dst == NULL))
        goto done;
    PyObject *at = at_src != NULL ? at_src : at_dst;
    int outside_translated = PySet_Contains(self->translated, at_src != NULL ? dst : src);
    if (outside_translated != 0 || !nic_entry_ok(at)) {
        result = outside_translated < 0 || PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    int swapped = second_endpoint_lower(c);
    canonical = make_key(c, 1);
    if (canonical == NULL) {
        result = -1;
        goto done;
    }
    PyObject *found = PyDict_GetItemWithError(PyTuple_GET_ITEM(at, 1), canonical);
    if (found == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    if (!Py_IS_TYPE(found, &RecordType))
        goto done;
    Record *r = (Record *)found;
    PyObject *outcome = r->outcome;
    if (r->state == NULL || !r->bucket || r->expires <= ts || r->state == self->closed || r->nat != Py_None ||
            !PyTuple_Check(outcome) || PyTuple_GET_SIZE(outcome) != 5)
        goto done;
    PyObject *head = PyTuple_Pack(4, PyTuple_GET_ITEM(outcome, 4), PyTuple_GET_ITEM(at, 5), PyTuple_GET_ITEM(outcome, 0),
                                  PyTuple_GET_ITEM(outcome, 1));
    if (head == NULL) {
        result = -1;
        goto done;
    }
    /* the packet travels as the flow's first did when both are or both are not in canonical order */
    int forward = swapped == (r->reversed != 0);
    LegOf leg = leg_at(at, c, r);
    result = remember_legs(self->recent, c, &leg, 1, forward, head, head) < 0 ? -1 : 1;
    Py_DECREF(head);
done:
    Py_XDECREF(src);
    Py_XDECREF(dst);
    Py_XDECREF(canonical);
    return result;
}

/* The nics entries (new references) of a new flow from outside the scenario to one of its NICs
   (`*at_src` NULL), or between two of them, when no NIC of it holds a record of it (a dead one
   included: the Python path ends those): where Dataplane._packet would call _new_at_nic, or _new with
   nothing found; with the key its records are kept by (`*canonical`, a new reference). 1 when found, 0
   when not such a flow, -1 on error. */
static int
new_flow_nics(FastPath *self, const Common *c, PyObject *key, PyObject **at_src, PyObject **at_dst,
              PyObject **canonical_out)
{
    PyObject *src = PyLong_FromUnsignedLong(c->src), *dst = PyLong_FromUnsignedLong(c->dst);
    PyObject *ats[2] = {NULL, NULL}, *canonical = NULL;
    int result = -1;
    if (src == NULL || dst == NULL)
        goto done;
    ats[0] = PyDict_GetItemWithError(self->nics, src);
    if (ats[0] == NULL && PyErr_Occurred())
        goto done;
    ats[1] = PyDict_GetItemWithError(self->nics, dst);
    if (ats[1] == NULL && PyErr_Occurred())
        goto done;
    result = 0;
    if (ats[1] == NULL || (ats[0] != NULL && !nic_entry_ok(ats[0])) || !nic_entry_ok(ats[1])) {
        result = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    canonical = second_endpoint_lower(c) ? make_key(c, 1) : Py_NewRef(key);
    if (canonical == NULL) {
        result = -1;
        goto done;
    }
    for (int i = ats[0] == NULL; i < 2; i++) {
        if (PyDict_GetItemWithError(PyTuple_GET_ITEM(ats[i], 1), canonical) != NULL || PyErr_Occurred()) {
            result = PyErr_Occurred() ? -1 : 0;
            goto done;
        }
    }
    *at_src = Py_XNewRef(ats[0]);
    *at_dst = Py_NewRef(ats[1]);
    *canonical_out = Py_NewRef(canonical);
    result = 1;
done:
    Py_XDECREF(src);
    Py_XDECREF(dst);
    Py_XDECREF(canonical);
    return result;
}

/* A flow from outside to a NIC's public IP, whose NIC holds no record of it after DNAT: 1, else 0 (or
   -1 on error). The source must be neither a NIC's address nor a translated one. */
static int
new_public(FastPath *self, const Common *c)
{
    PyObject *src = PyLong_FromUnsignedLong(c->src), *dst = PyLong_FromUnsignedLong(c->dst), *at, *key = NULL;
    int result = -1;
    if (src == NULL || dst == NULL)
        goto done;
    at = PyDict_GetItemWithError(self->publics, dst);
    result = 0;
    if (at == NULL || PyDict_GetItemWithError(self->nics, src) != NULL || PyErr_Occurred())
        goto done;
    int translated = PySet_Contains(self->translated, src);
    if (translated != 0 || !PyTuple_Check(at) || PyTuple_GET_SIZE(at) != 2 || !nic_entry_ok(PyTuple_GET_ITEM(at, 0)) ||
            !PyLong_Check(PyTuple_GET_ITEM(at, 1)))
        goto done;
    Common inside = *c;
    inside.dst = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(at, 1));
    if (PyErr_Occurred())
        goto done;
    key = make_key(&inside, 1);
    if (key == NULL)
        goto done;
    PyObject *record = PyDict_GetItemWithError(PyTuple_GET_ITEM(PyTuple_GET_ITEM(at, 0), 1), key);
    result = record == NULL && !PyErr_Occurred();
done:
    if (PyErr_Occurred())
        result = -1;
    Py_XDECREF(src);
    Py_XDECREF(dst);
    Py_XDECREF(key);
    return result;
}

static int schedule(PyObject *table, Record *r);

/* FastPath.decide_new_flows(chain_of, memo_of, between_of, first_states, active, platform[, started]): the
   first packet of a new flow from outside to a NIC, or between two NICs untranslated, may be decided here;
   `started` (a flow listener's flow_started) hears of each record made, as Conntrack.started tells it. */
static PyObject *
FastPath_decide_new_flows(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 6 || nargs > 7 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1]) ||
            !PyCallable_Check(args[2]) || !PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != 256 ||
            !PyAnySet_Check(args[5]) || (nargs == 7 && args[6] != Py_None && !PyCallable_Check(args[6]))) {
        PyErr_SetString(PyExc_TypeError, "decide_new_flows(chain_of, memo_of, between_of, first states by TCP "
                        "flags (256), UDP state, platform addresses (a set)[, started callable or None])");
        return NULL;
    }
    PyObject *inbound = PyDict_New(), *outbound = PyDict_New(), *pairs = PyDict_New();
    uint32_t *platform = PyMem_Calloc(PySet_GET_SIZE(args[5]) + 1, sizeof(uint32_t));
    PyObject *addresses = PyObject_GetIter(args[5]), *address;
    Py_ssize_t n = 0;
    if (inbound != NULL && outbound != NULL && pairs != NULL && platform != NULL && addresses != NULL) {
        while ((address = PyIter_Next(addresses)) != NULL) {
            unsigned long long ip = PyLong_AsUnsignedLongLong(address);
            Py_DECREF(address);
            if (PyErr_Occurred())
                break;
            if (ip <= 0xFFFFFFFFULL)
                platform[n++] = (uint32_t)ip;
        }
    } else if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    Py_XDECREF(addresses);
    if (PyErr_Occurred()) {
        Py_XDECREF(inbound);
        Py_XDECREF(outbound);
        Py_XDECREF(pairs);
        PyMem_Free(platform);
        return NULL;
    }
    Py_XSETREF(self->chain_of, Py_NewRef(args[0]));
    Py_XSETREF(self->memo_of, Py_NewRef(args[1]));
    Py_XSETREF(self->between_of, Py_NewRef(args[2]));
    Py_XSETREF(self->first_states, Py_NewRef(args[3]));
    Py_XSETREF(self->active, Py_NewRef(args[4]));
    Py_XSETREF(self->chains[0], inbound);
    Py_XSETREF(self->chains[1], outbound);
    Py_XSETREF(self->pairs, pairs);
    Py_XSETREF(self->started, nargs == 7 && args[6] != Py_None ? Py_NewRef(args[6]) : NULL);
    PyMem_Free(self->platform);
    self->platform = platform;
    self->n_platform = n;
    Py_RETURN_NONE;
}

/* Whether a chain chain_of gave still holds: each (name, NSG, version) it was built from is the NSG of
   that name in the scenario's NSGs, at that version (as Policy._compiled_chain checks). 1, 0, or -1. */
static int
chain_holds(PyObject *chain)
{
    PyObject *versions = PyTuple_GET_ITEM(chain, 0);
    PyObject *groups = PyObject_GetAttr(PyTuple_GET_ITEM(chain, 1), s_groups);
    int result = groups != NULL && PyDict_Check(groups) ? 1 : -1;
    if (result < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "a scenario's network_security_groups must be a dict");
    for (Py_ssize_t i = 0; result == 1 && i < PyTuple_GET_SIZE(versions); i++) {
        PyObject *v = PyTuple_GET_ITEM(versions, i);
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 3) {
            PyErr_SetString(PyExc_TypeError, "a chain's versions must be (name, NSG, version) tuples");
            result = -1;
            break;
        }
        PyObject *group = PyDict_GetItemWithError(groups, PyTuple_GET_ITEM(v, 0));
        if (group != PyTuple_GET_ITEM(v, 1)) {
            result = PyErr_Occurred() ? -1 : 0;
            break;
        }
        PyObject *version = PyObject_GetAttr(group, s_version);
        result = version != NULL ? PyObject_RichCompareBool(version, PyTuple_GET_ITEM(v, 2), Py_EQ) : -1;
        Py_XDECREF(version);
    }
    Py_XDECREF(groups);
    return result;
}

/* A NIC's chain of NSGs in a direction (a new reference), made again by chain_of when an NSG of it
   changed. */
static PyObject *
chain_at(FastPath *self, PyObject *at, int outbound)
{
    PyObject *nic = PyTuple_GET_ITEM(at, 0), *name = PyTuple_GET_ITEM(at, 5), *chains = self->chains[outbound];
    PyObject *chain = PyDict_GetItemWithError(chains, name);
    if (chain != NULL) {
        Py_INCREF(chain);
        int holds = chain_holds(chain);
        if (holds != 0) {
            if (holds < 0)
                Py_CLEAR(chain);
            return chain;
        }
        Py_CLEAR(chain);
    } else if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *call[2] = {nic, outbound ? Py_True : Py_False};
    chain = PyObject_Vectorcall(self->chain_of, call, 2, NULL);
    if (chain == NULL)
        return NULL;
    int ok = PyTuple_Check(chain) && PyTuple_GET_SIZE(chain) == 4 && PyTuple_Check(PyTuple_GET_ITEM(chain, 0)) &&
        PyTuple_Check(PyTuple_GET_ITEM(chain, 2)) && PyDict_Check(PyTuple_GET_ITEM(chain, 3));
    for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(PyTuple_GET_ITEM(chain, 2)); i++) {
        Rules *r = (Rules *)PyTuple_GET_ITEM(PyTuple_GET_ITEM(chain, 2), i);
        ok = Py_IS_TYPE((PyObject *)r, &RulesType) && r->sets != NULL;
    }
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "chain_of must give (versions, the scenario, initialised Rules of each "
                        "NSG, memo dict)");
        Py_DECREF(chain);
        return NULL;
    }
    if (PyDict_SetItem(chains, name, chain) < 0)
        Py_CLEAR(chain);
    return chain;
}

/* The index of each NSG's first matching rule, as far as evaluation goes (a Deny ends it), as the slot
   Policy.leg keys its results by: the index itself for one NSG, else a tuple. NULL with no error set
   when the chain is longer than the C path takes. */
static PyObject *
slot_of_rules(PyObject *chain, const Common *c)
{
    PyObject *rules = PyTuple_GET_ITEM(chain, 2);
    Py_ssize_t n = PyTuple_GET_SIZE(rules), taken = 0, found[8];
    if (n > 8)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Rules *r = (Rules *)PyTuple_GET_ITEM(rules, i);
        Py_ssize_t index = rules_lookup(r, c->proto, (uint32_t)c->src, c->sport, (uint32_t)c->dst, c->dport);
        if (index < 0)
            return NULL;
        found[taken++] = index;
        if (r->denies[index])
            break;
    }
    if (n == 1)
        return PyLong_FromSsize_t(found[0]);
    PyObject *slot = PyTuple_New(taken);
    for (Py_ssize_t i = 0; slot != NULL && i < taken; i++) {
        PyObject *index = PyLong_FromSsize_t(found[i]);
        if (index == NULL)
            Py_CLEAR(slot);
        else
            PyTuple_SET_ITEM(slot, i, index);
    }
    return slot;
}

/* memo[slot], asked of `ask(*args, slot)` the first time (a new reference), checked to be (deny, the
   policy's result: 6 fields, the verdict's direction, its NIC), then when allowed `outcomes` Outcomes
   (5 fields each). */
static PyObject *
decided_at(PyObject *memo, PyObject *slot, PyObject *ask, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t outcomes)
{
    PyObject *decided = PyDict_GetItemWithError(memo, slot);
    if (decided != NULL)
        return Py_NewRef(decided);
    if (PyErr_Occurred())
        return NULL;
    PyObject *call[3] = {nargs > 0 ? args[0] : NULL, nargs > 1 ? args[1] : NULL, NULL};
    call[nargs] = slot;
    decided = PyObject_Vectorcall(ask, call, nargs + 1, NULL);
    if (decided == NULL)
        return NULL;
    int ok = PyTuple_Check(decided) && PyTuple_GET_SIZE(decided) >= 4 && PyBool_Check(PyTuple_GET_ITEM(decided, 0)) &&
        PyTuple_Check(PyTuple_GET_ITEM(decided, 1)) && PyTuple_GET_SIZE(PyTuple_GET_ITEM(decided, 1)) == 6;
    int allowed = ok && PyTuple_GET_ITEM(decided, 0) == Py_False;
    if (allowed)
        ok = PyTuple_GET_SIZE(decided) == 4 + outcomes;
    for (Py_ssize_t i = 0; ok && allowed && i < outcomes; i++) {
        PyObject *outcome = PyTuple_GET_ITEM(decided, 4 + i);
        ok = PyTuple_Check(outcome) && PyTuple_GET_SIZE(outcome) == 5;
    }
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "a new flow's decision must be (deny, the policy's result: 6 fields, "
                     "direction, NIC), then when allowed %zd outcome(s) of 5 fields", outcomes);
        Py_DECREF(decided);
        return NULL;
    }
    if (PyDict_SetItem(memo, slot, decided) < 0)
        Py_CLEAR(decided);
    return decided;
}

/* The Verdict the Python path gives a new flow, from its decision (what decided_at gave) and the state
   of its records (NULL: denied). */
static PyObject *
new_flow_verdict(FastPath *self, const Common *c, PyObject *when, PyObject *decided, PyObject *state)
{
    PyObject *result = PyTuple_GET_ITEM(decided, 1);
    PyObject *packet = make_packet(self, c);
    PyObject *state_value = packet == NULL ? NULL : state != NULL ? PyObject_GetAttr(state, s_value)
                                                                  : Py_NewRef(Py_None);
    PyObject *verdict = state_value != NULL ? new_tuple_of(self->verdict_type, 12) : NULL;
    if (verdict == NULL) {
        Py_XDECREF(packet);
        Py_XDECREF(state_value);
        return NULL;
    }
    PyObject *fields[12] = {when, PyTuple_GET_ITEM(result, 0), PyTuple_GET_ITEM(result, 3), PyTuple_GET_ITEM(decided, 2),
                            PyTuple_GET_ITEM(decided, 3), PyTuple_GET_ITEM(result, 1), PyTuple_GET_ITEM(result, 2),
                            state_value, packet, Py_None, s_empty, PyTuple_GET_ITEM(result, 4)};
    for (int i = 0; i < 12; i++)
        PyTuple_SET_ITEM(verdict, i, (i == 7 || i == 8) ? fields[i] : Py_NewRef(fields[i]));
    return verdict;
}

/* Whether a NIC's table has room for one more flow: 1, 0 (the Python path refuses or frees), -1. */
static int
has_room(PyObject *at)
{
    PyObject *limit = PyObject_GetAttr(PyTuple_GET_ITEM(at, 2), s_max_flows);
    Py_ssize_t max_flows = limit != NULL ? PyLong_AsSsize_t(limit) : -1;
    Py_XDECREF(limit);
    if (max_flows < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "a flow table's max_flows must not be negative");
        return -1;
    }
    return PyDict_GET_SIZE(PyTuple_GET_ITEM(at, 1)) < max_flows;
}

/* The record of a new flow at a NIC (its nics entry), its first packet counted, as FlowTable.add makes
   it: scheduled first, so a deadline it refuses leaves the table as it was. Borrowed from the table. */
static Record *
open_record(const Common *c, double ts, PyObject *at, PyObject *canonical, PyObject *state, PyObject *outcome)
{
    PyObject *seconds = c->proto == 6 ? PyDict_GetItemWithError(PyTuple_GET_ITEM(at, 3), state)
                                      : PyTuple_GET_ITEM(at, 4);
    double timeout = seconds != NULL ? PyFloat_AsDouble(seconds) : -1.0;
    if (seconds == NULL || (timeout == -1.0 && PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "a first TCP state without a timeout");
        return NULL;
    }
    Record *r = (Record *)RecordType.tp_alloc(&RecordType, 0);
    if (r == NULL)
        return NULL;
    r->key = Py_NewRef(canonical);
    r->reversed = (char)second_endpoint_lower(c);
    r->state = Py_NewRef(state);
    r->expires = ts + timeout;
    r->outcome = Py_NewRef(outcome);
    r->nat = Py_NewRef(Py_None);
    int done = schedule(PyTuple_GET_ITEM(at, 2), r) == 0 && PyDict_SetItem(PyTuple_GET_ITEM(at, 1), canonical,
                                                                           (PyObject *)r) == 0;
    Py_DECREF(r);  /* the table's now */
    if (!done)
        return NULL;
    r->packets_out = 1;
    r->bytes_out = c->length;
    return r;
}

/* The listener hears of the records a new flow made, NIC by NIC in route order, once all are made (as
   Conntrack.open_legs tells it). 0, or -1 on error. */
static int
tell_started(FastPath *self, PyObject *const ats[], Record *const made[], int n, double ts)
{
    if (self->started == NULL)
        return 0;
    PyObject *when = PyFloat_FromDouble(ts);
    if (when == NULL)
        return -1;
    int result = 0;
    for (int i = 0; i < n && result == 0; i++) {
        PyObject *heard = PyObject_CallFunctionObjArgs(self->started, PyTuple_GET_ITEM(ats[i], 5), (PyObject *)made[i],
                                                       when, NULL);
        result = heard != NULL ? 0 : -1;
        Py_XDECREF(heard);
    }
    Py_DECREF(when);
    return result;
}

/* Whether the C path may decide a new flow of these addresses and ports: not the platform's, whose
   flows and SMTP the policy treats apart. */
static int
decidable(const FastPath *self, const Common *c)
{
    if (self->chain_of == NULL || c->dport == 25 || c->sport == 25)
        return 0;
    for (Py_ssize_t i = 0; i < self->n_platform; i++) {
        if (self->platform[i] == (uint32_t)c->src || self->platform[i] == (uint32_t)c->dst)
            return 0;
    }
    return 1;
}

/* What a decision made here gives its caller (a new reference): the Verdict when it gave `when`, else
   the policy's result (its evaluations are the rule hits). `state`: the records' (NULL: denied). */
static PyObject *
decided_out(FastPath *self, const Common *c, PyObject *when, PyObject *decided, PyObject *state)
{
    return when != NULL ? new_flow_verdict(self, c, when, decided, state) : Py_NewRef(PyTuple_GET_ITEM(decided, 1));
}

/* The TCP state of a flow whose first packet this is, or a UDP flow's. */
static PyObject *
first_state(const FastPath *self, const Common *c)
{
    return c->proto == 6 ? PyTuple_GET_ITEM(self->first_states, c->flags) : self->active;
}

/* Dataplane._new_at_nic for the first packet of a new flow from outside to the NIC of `at` (its nics
   entry), whose records are kept by `canonical`: its Verdict (a new reference), or with no `when` the
   policy's result at the NIC alone; the flow's record is made when the policy allows it. NULL with no
   error set where the Python path must decide (`decidable`, a full table, a chain of more NSGs than
   the C path takes). */
static PyObject *
decide_at_nic(FastPath *self, const Common *c, double ts, PyObject *at, PyObject *canonical, PyObject *when)
{
    if (!decidable(self, c))
        return NULL;
    PyObject *chain = chain_at(self, at, 0);
    if (chain == NULL)
        return NULL;
    PyObject *result = NULL, *decided = NULL, *slot = slot_of_rules(chain, c);
    PyObject *nic = PyTuple_GET_ITEM(at, 0);
    if (slot != NULL)
        decided = decided_at(PyTuple_GET_ITEM(chain, 3), slot, self->memo_of, &nic, 1, 1);
    if (decided == NULL)
        goto done;
    if (PyTuple_GET_ITEM(decided, 0) == Py_True) {
        result = decided_out(self, c, when, decided, NULL);
        if (result != NULL)
            self->denied += 1;
        goto done;
    }
    if (has_room(at) <= 0)
        goto done;
    PyObject *state = first_state(self, c);
    Record *record = open_record(c, ts, at, canonical, state, PyTuple_GET_ITEM(decided, 4));
    if (record == NULL)
        goto done;
    self->allowed += 1;
    self->created += 1;
    Record *made[1] = {record};
    PyObject *ats[1] = {at};
    if (tell_started(self, ats, made, 1, ts) == 0)
        result = decided_out(self, c, when, decided, state);
done:
    Py_XDECREF(decided);
    Py_XDECREF(slot);
    Py_DECREF(chain);
    return result;
}

/* The memo of new flows from one NIC to another (a new reference): kept while both NICs' chains hold;
   at most PAIRS_KEPT pairs, all forgotten when full (a mesh of thousands of NICs must not fill memory). */
#define PAIRS_KEPT 65536

static PyObject *
pair_memo(FastPath *self, PyObject *at_src, PyObject *at_dst, PyObject *out, PyObject *in)
{
    PyObject *names = PyTuple_Pack(2, PyTuple_GET_ITEM(at_src, 5), PyTuple_GET_ITEM(at_dst, 5));
    if (names == NULL)
        return NULL;
    PyObject *pair = PyDict_GetItemWithError(self->pairs, names);
    PyObject *memo = NULL;
    if (pair != NULL && PyTuple_GET_ITEM(pair, 0) == out && PyTuple_GET_ITEM(pair, 1) == in) {
        memo = Py_NewRef(PyTuple_GET_ITEM(pair, 2));
    } else if (!PyErr_Occurred() && (memo = PyDict_New()) != NULL) {
        if (PyDict_GET_SIZE(self->pairs) >= PAIRS_KEPT)
            PyDict_Clear(self->pairs);
        pair = PyTuple_Pack(3, out, in, memo);
        if (pair == NULL || PyDict_SetItem(self->pairs, names, pair) < 0)
            Py_CLEAR(memo);
        Py_XDECREF(pair);
    }
    Py_DECREF(names);
    return memo;
}

/* Dataplane._new for the first packet of a new flow from one NIC to another (VM to VM, nothing
   translated), neither of which holds a record of it: as decide_at_nic, with the source's outbound
   chain, then the destination's inbound chain; an allowed flow's records are made at both NICs and
   remembered in the recent-flow table both ways, as Conntrack.open_legs does. */
static PyObject *
decide_between_nics(FastPath *self, const Common *c, double ts, PyObject *at_src, PyObject *at_dst,
                    PyObject *canonical, PyObject *when)
{
    if (!decidable(self, c) || PyTuple_GET_ITEM(at_src, 0) == PyTuple_GET_ITEM(at_dst, 0))
        return NULL;
    PyObject *out = chain_at(self, at_src, 1);
    PyObject *in = out != NULL ? chain_at(self, at_dst, 0) : NULL;
    PyObject *result = NULL, *decided = NULL, *slots = NULL, *memo = NULL;
    if (in == NULL)
        goto done;
    PyObject *slot_out = slot_of_rules(out, c), *slot_in = slot_out != NULL ? slot_of_rules(in, c) : NULL;
    if (slot_in != NULL) {
        slots = PyTuple_Pack(2, slot_out, slot_in);
        Py_DECREF(slot_in);
    }
    Py_XDECREF(slot_out);
    if (slots == NULL || (memo = pair_memo(self, at_src, at_dst, out, in)) == NULL)
        goto done;
    PyObject *nics[2] = {PyTuple_GET_ITEM(at_src, 0), PyTuple_GET_ITEM(at_dst, 0)};
    decided = decided_at(memo, slots, self->between_of, nics, 2, 2);
    if (decided == NULL)
        goto done;
    if (PyTuple_GET_ITEM(decided, 0) == Py_True) {
        result = decided_out(self, c, when, decided, NULL);
        if (result != NULL)
            self->denied += 1;
        goto done;
    }
    int room = has_room(at_src);
    if (room > 0)
        room = has_room(at_dst);
    if (room <= 0)
        goto done;
    PyObject *state = first_state(self, c);
    PyObject *ats[2] = {at_src, at_dst};
    LegOf legs[2];
    for (int i = 0; i < 2; i++) {
        Record *r = open_record(c, ts, ats[i], canonical, state, PyTuple_GET_ITEM(decided, 4 + i));
        if (r == NULL)
            goto done;
        legs[i] = leg_at(ats[i], c, r);
    }
    self->allowed += 1;
    self->created += 2;
    /* head: (direction, NIC, NSG, rule) of the last leg's outcome, each way */
    PyObject *o_src = PyTuple_GET_ITEM(decided, 4), *o_dst = PyTuple_GET_ITEM(decided, 5);
    PyObject *head = PyTuple_Pack(4, PyTuple_GET_ITEM(o_dst, 4), PyTuple_GET_ITEM(at_dst, 5), PyTuple_GET_ITEM(o_dst, 0),
                                  PyTuple_GET_ITEM(o_dst, 1));
    PyObject *head_back = PyTuple_Pack(4, PyTuple_GET_ITEM(o_src, 4), PyTuple_GET_ITEM(at_src, 5),
                                       PyTuple_GET_ITEM(o_src, 0), PyTuple_GET_ITEM(o_src, 1));
    Record *made[2] = {legs[0].record, legs[1].record};
    if (head != NULL && head_back != NULL && remember_legs(self->recent, c, legs, 2, 1, head, head_back) == 0 &&
            tell_started(self, ats, made, 2, ts) == 0)
        result = decided_out(self, c, when, decided, state);
    Py_XDECREF(head);
    Py_XDECREF(head_back);
done:
    Py_XDECREF(decided);
    Py_XDECREF(memo);
    Py_XDECREF(slots);
    Py_XDECREF(out);
    Py_XDECREF(in);
    return result;
}

/* The first packet of a new flow the Python path would decide without looking further: one from outside
   to a NIC's address (Dataplane._new_at_nic, or decide_at_nic here), or between two NICs (decided here,
   else Python decides the packet from the start), or to a NIC's public IP whose NIC holds no record of
   it (Dataplane._new_translated: the route, then the policy). The verdict (a new reference), or NULL:
   with an exception set on error, else it is not such a packet or Python decides it. `hits_only`: the
   caller needs only the rule hits, so a flow decided here gives the policy's result, not a Verdict. */
static PyObject *
hand_off(FastPath *self, const Common *c, double ts, PyObject *when, int hits_only)
{
    PyObject *key = make_key(c, 0);
    if (key == NULL)
        return NULL;
    PyObject *verdict = NULL, *packet = NULL, *at_src = NULL, *at_dst = NULL, *canonical = NULL;
    int found = new_flow_nics(self, c, key, &at_src, &at_dst, &canonical);
    int public = found == 0 ? new_public(self, c) : 0;
    if (found == 1) {
        verdict = at_src != NULL ? decide_between_nics(self, c, ts, at_src, at_dst, canonical, hits_only ? NULL : when)
                                 : decide_at_nic(self, c, ts, at_dst, canonical, hits_only ? NULL : when);
        if (verdict != NULL)
            self->packets += 1;
        if (verdict != NULL || PyErr_Occurred() || at_src != NULL)
            goto done;
    }
    if ((found == 1 || public == 1) && (packet = make_packet(self, c)) != NULL) {
        self->packets += 1;
        if (found == 1) {
            PyObject *callee = Py_NewRef(self->new_at_nic), *inbound = Py_NewRef(self->inbound);
            PyObject *call[6] = {packet, when, key, PyTuple_GET_ITEM(at_dst, 0), inbound, Py_False};
            verdict = PyObject_Vectorcall(callee, call, 6, NULL);
            Py_DECREF(callee);
            Py_DECREF(inbound);
        } else {
            PyObject *callee = Py_NewRef(self->new_translated);
            PyObject *call[3] = {packet, when, key};
            verdict = PyObject_Vectorcall(callee, call, 3, NULL);
            Py_DECREF(callee);
        }
    }
done:
    Py_XDECREF(packet);
    Py_XDECREF(at_src);
    Py_XDECREF(at_dst);
    Py_XDECREF(canonical);
    Py_DECREF(key);
    return verdict;
}

/* FlowTable.reschedule in C: the record goes to the timing wheel's bucket of its deadline (the table's
   `wheel`, bucket → records, and `due`, the heap of buckets). A deadline past 2**53 s (the wheel's
   limit) goes to the Python method, which refuses it. */
static int
schedule(PyObject *table, Record *r)
{
    if (!(r->expires <= 9007199254740992.0)) {
        PyObject *done = PyObject_CallMethodOneArg(table, s_reschedule, (PyObject *)r);
        Py_XDECREF(done);
        return done != NULL ? 0 : -1;
    }
    PyObject *wheel = PyObject_GetAttr(table, s_wheel);
    PyObject *due = wheel != NULL ? PyObject_GetAttr(table, s_due) : NULL;
    long long bucket = (long long)ceil(r->expires);
    PyObject *at = due != NULL ? PyLong_FromLongLong(bucket) : NULL;
    int result = -1;
    if (at == NULL)
        goto done;
    if (!PyDict_Check(wheel) || !PyList_Check(due)) {
        PyErr_SetString(PyExc_TypeError, "a flow table's wheel must be a dict, its due buckets a list");
        goto done;
    }
    PyObject *slot = PyDict_GetItemWithError(wheel, at);
    if (slot == NULL && PyErr_Occurred())
        goto done;
    if (slot != NULL && !PyList_Check(slot)) {
        PyErr_SetString(PyExc_TypeError, "a timing wheel's bucket must be a list of records");
        goto done;
    }
    r->bucket = bucket;
    if (slot != NULL) {
        result = PyList_Append(slot, (PyObject *)r);
    } else {
        PyObject *records = PyList_New(1);
        if (records == NULL)
            goto done;
        PyList_SET_ITEM(records, 0, Py_NewRef((PyObject *)r));
        result = PyDict_SetItem(wheel, at, records);
        Py_DECREF(records);
        if (result == 0) {
            PyObject *call[2] = {due, at};
            PyObject *pushed = PyObject_Vectorcall(heappush, call, 2, NULL);
            result = pushed != NULL ? 0 : -1;
            Py_XDECREF(pushed);
        }
    }
done:
    Py_XDECREF(wheel);
    Py_XDECREF(due);
    Py_XDECREF(at);
    return result;
}

/* FlowTable.advance for a table of flows no listener hears of and none translated (Conntrack.advance
   checks), so the order they end in changes nothing: the records whose deadline is at or before `now`
   end, the others of the buckets looked at move to their new bucket. (closed, expired): how many ended
   closed and how many idle, for the counters. */
static PyObject *
FastPath_expire_due(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expire_due(table, now)");
        return NULL;
    }
    if (!ready(self))
        return NULL;
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *table = args[0];
    PyObject *wheel = PyObject_GetAttr(table, s_wheel);
    PyObject *due = wheel != NULL ? PyObject_GetAttr(table, s_due) : NULL;
    PyObject *flows = due != NULL ? PyObject_GetAttr(table, s_by_key) : NULL, *records = NULL;
    long long closed = 0, expired = 0;
    int error = flows == NULL;
    if (!error && (!PyDict_Check(wheel) || !PyList_Check(due) || !PyDict_Check(flows))) {
        PyErr_SetString(PyExc_TypeError, "a flow table's wheel and records must be dicts, its due buckets a list");
        error = 1;
    }
    while (!error && PyList_GET_SIZE(due) > 0) {
        long long bucket = PyLong_AsLongLong(PyList_GET_ITEM(due, 0));
        if (bucket == -1 && PyErr_Occurred()) {
            error = 1;
            break;
        }
        if (!((double)bucket <= now))
            break;
        PyObject *popped = PyObject_CallOneArg(heappop, due);
        records = popped != NULL ? PyDict_GetItemWithError(wheel, popped) : NULL;
        Py_XINCREF(records);
        if (records == NULL || PyDict_DelItem(wheel, popped) < 0 || !PyList_Check(records)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a timing wheel's bucket must be a list of records");
            Py_XDECREF(popped);
            error = 1;
            break;
        }
        Py_DECREF(popped);
        for (Py_ssize_t i = 0; !error && i < PyList_GET_SIZE(records); i++) {
            PyObject *item = PyList_GET_ITEM(records, i);
            if (!Py_IS_TYPE(item, &RecordType) || ((Record *)item)->key == NULL) {
                PyErr_SetString(PyExc_TypeError, "a timing wheel holds flow records in C");
                error = 1;
                break;
            }
            Record *r = (Record *)item;
            if (r->bucket != bucket)
                continue;
            PyObject *current = PyDict_GetItemWithError(flows, r->key);
            if (current != item) {
                error = PyErr_Occurred() != NULL;
                continue;
            }
            if (r->expires <= now) {
                r->bucket = 0;
                if (r->state == self->closed)
                    closed += 1;
                else
                    expired += 1;
                error = PyDict_DelItem(flows, r->key) < 0;
            } else {
                error = schedule(table, r) < 0;
            }
        }
        Py_CLEAR(records);
    }
    Py_XDECREF(records);
    Py_XDECREF(wheel);
    Py_XDECREF(due);
    Py_XDECREF(flows);
    return error ? NULL : Py_BuildValue("(LL)", closed, expired);
}

/* The recent entry of a frame's flow, where every leg holds a live record: 1 (the entry borrowed), 0 when
   the Python path must decide (a new flow, or one whose dead records the Python path ends), -1 on error. */
static int
live_entry(FastPath *self, const Common *c, double ts, Entry **found)
{
    RecentTable *recent = self->recent;
    if (recent->slots == NULL) {
        PyErr_SetString(PyExc_TypeError, "the recent-flow table was cleared by the collector");
        return -1;
    }
    Entry *e = slot_of(recent, (uint32_t)c->src, (uint32_t)c->dst, (uint16_t)c->sport, (uint16_t)c->dport,
                       (uint8_t)c->proto)->entry;
    if (e == NULL) {
        int remembered = remember_known(self, c, ts);
        if (remembered <= 0)
            return remembered;
        e = slot_of(recent, (uint32_t)c->src, (uint32_t)c->dst, (uint16_t)c->sport, (uint16_t)c->dport,
                    (uint8_t)c->proto)->entry;
    }
    for (Py_ssize_t i = 0; i < e->n; i++) {
        Record *r = e->legs[i].record;
        if (r->state == NULL) {
            PyErr_SetString(PyExc_TypeError, "a recent flow's record has no state");
            return -1;
        }
        if (!r->bucket || r->expires <= ts || r->state == self->closed)
            return 0;
    }
    *found = e;
    return 1;
}

/* Pass a packet of a live recent flow as pipeline._known does: 1 with the flow's entry (held: release
   it) and the last leg's new state (a new reference), 0 when the Python path must decide (live_entry),
   -1 on error. */
static int
pass_recent(FastPath *self, const Common *c, double ts, Entry **entry_out, PyObject **state_out)
{
    Entry *e;
    int live = live_entry(self, c, ts, &e);
    if (live <= 0)
        return live;
    /* The table's reschedule is Python code: it may drop the entry or change the moves, so what is
       used across it is held here. */
    e->refs += 1;
    PyObject *by_state = c->proto == 6 ? Py_NewRef(PyTuple_GET_ITEM(self->moves, c->flags)) : NULL;
    PyObject *state = NULL;
    for (Py_ssize_t i = 0; i < e->n; i++) {
        EntryLeg *leg = &e->legs[i];
        Record *r = leg->record;
        int forward = leg->forward;
        if (forward) {
            r->packets_out += 1;
            r->bytes_out += c->length;
        } else {
            r->packets_in += 1;
            r->bytes_in += c->length;
        }
        double timeout;
        int from = by_state != NULL ? state_index(self, r->state) : -1;
        int to = from >= 0 ? self->next[c->flags][from][forward] : -1;
        if (to >= 0 && !isnan(timeout = tcp_timeout(self, leg->timeouts, to))) {
            Py_XSETREF(state, Py_NewRef(self->states[to]));
            Py_SETREF(r->state, Py_NewRef(state));
        } else if (by_state != NULL) {  /* a state the moves do not know, or a timeout that is not a float */
            PyObject *next = PyDict_GetItemWithError(by_state, r->state);
            if (next != NULL && (!PyTuple_Check(next) || PyTuple_GET_SIZE(next) != 2 || !PyDict_Check(leg->timeouts))) {
                PyErr_SetString(PyExc_TypeError, "a TCP move must be (next state, next state), its timeouts a dict");
                goto error;
            }
            PyObject *seconds = next ? PyDict_GetItemWithError(leg->timeouts, PyTuple_GET_ITEM(next, forward)) : NULL;
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
            timeout = PyFloat_AsDouble(leg->timeouts);
        }
        if (timeout == -1.0 && PyErr_Occurred())
            goto error;
        double expires = r->expires = ts + timeout;
        if (expires <= (double)(r->bucket - 1) && schedule(leg->table, r) < 0)
            goto error;
    }
    Py_XDECREF(by_state);
    self->packets += 1;
    self->allowed += 1;
    *entry_out = e;
    *state_out = state;
    return 1;
error:
    entry_release(e);
    Py_XDECREF(by_state);
    Py_XDECREF(state);
    return -1;
}

static PyObject *
FastPath_process(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    Common c;
    Entry *entry;
    PyObject *state;
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
    int passed = pass_recent(self, &c, ts, &entry, &state);
    if (passed < 0)
        return NULL;
    if (passed == 0) {
        PyObject *verdict = hand_off(self, &c, ts, args[1], 0);
        return verdict != NULL || PyErr_Occurred() ? verdict : make_packet(self, &c);
    }
    /* head: (direction, nic, nsg, rule) of the flow's last leg */
    PyObject *head = entry->head;
    PyObject *packet = make_packet(self, &c);
    PyObject *state_value = packet != NULL ? PyObject_GetAttr(state, s_value) : NULL;
    PyObject *verdict = state_value != NULL ? new_tuple_of(self->verdict_type, 12) : NULL;
    if (verdict != NULL) {
        PyObject *fields[12] = {args[1], s_allow, s_flow, PyTuple_GET_ITEM(head, 0), PyTuple_GET_ITEM(head, 1),
                                PyTuple_GET_ITEM(head, 2), PyTuple_GET_ITEM(head, 3), state_value, packet,
                                entry->translated, s_empty, s_empty_tuple};
        for (int i = 0; i < 12; i++)
            PyTuple_SET_ITEM(verdict, i, (i == 7 || i == 8) ? fields[i] : Py_NewRef(fields[i]));
    } else {
        Py_XDECREF(state_value);
        Py_XDECREF(packet);
    }
    entry_release(entry);
    Py_DECREF(state);
    return verdict;
}


static inline uint32_t
u32_at(const unsigned char *b, int big)
{
    return big ? ((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3])
               : ((uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0]);
}

#define MAX_INTERFACES 64

/* A capture's format as replay.Capture.format gives it: (pcapng, big-endian, ((linktype, seconds per
   tick) per interface), the largest captured length, the latest time). */
typedef struct {
    int pcapng, big, count;
    int ethernet[MAX_INTERFACES];
    long linktype[MAX_INTERFACES];
    double resolution[MAX_INTERFACES];
    long long max_caplen;
    double latest;
} Format;

static int
format_of(PyObject *format, Format *f)
{
    PyObject *interfaces;
    if (!PyTuple_Check(format) || !PyArg_ParseTuple(format, "ppO!Ld", &f->pcapng, &f->big, &PyTuple_Type,
                                                   &interfaces, &f->max_caplen, &f->latest))
        return -1;
    f->count = (int)PyTuple_GET_SIZE(interfaces);
    if (f->count > MAX_INTERFACES)
        f->count = MAX_INTERFACES;  /* a record of a later interface stops the walk */
    for (int i = 0; i < f->count; i++) {
        PyObject *interface = PyTuple_GET_ITEM(interfaces, i);
        if (!PyTuple_Check(interface) || !PyArg_ParseTuple(interface, "ld", &f->linktype[i], &f->resolution[i]))
            return -1;
        f->ethernet[i] = f->linktype[i] == 1;
    }
    return 0;
}

/* What every walk of a capture's buffer starts from: (buffer, pos, format, last, until, limit, ...), the
   buffer viewed (the walk releases `view`) and a position past its end (-1) at its end. */
static int
walk_arguments(PyObject *const *args, Py_buffer *view, Py_ssize_t *pos, Format *f, double *last, double *until,
               Py_ssize_t *limit)
{
    *pos = PyLong_AsSsize_t(args[1]);
    if ((*pos == -1 && PyErr_Occurred()) || format_of(args[2], f) < 0)
        return -1;
    *last = PyFloat_AsDouble(args[3]);
    if (*last == -1.0 && PyErr_Occurred())
        return -1;
    *until = PyFloat_AsDouble(args[4]);
    if (*until == -1.0 && PyErr_Occurred())
        return -1;
    *limit = PyLong_AsSsize_t(args[5]);
    if ((*limit == -1 && PyErr_Occurred()) || PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0)
        return -1;
    if (*pos < 0)
        *pos = view->len;
    return 0;
}

/* The record at pos: its time, where its frame starts, its captured length and interface; the position
   of the next record, or -1 where a walk stops (the buffer's end, a record cut by it, anything unusual:
   the Python reader reads it and names what is wrong). The time is the one the Python reader computes,
   by the same operations in the same order. */
static Py_ssize_t
record_at(const unsigned char *b, Py_ssize_t end, Py_ssize_t pos, const Format *f, double *ts, Py_ssize_t *data,
          Py_ssize_t *caplen, int *iface)
{
    if (!f->pcapng) {
        if (end - pos < 16)
            return -1;
        uint32_t sec = u32_at(b + pos, f->big), frac = u32_at(b + pos + 4, f->big);
        *caplen = u32_at(b + pos + 8, f->big);
        if (*caplen > f->max_caplen || end - pos - 16 < *caplen)
            return -1;
        *ts = (double)sec + (double)frac * f->resolution[0];
        *data = pos + 16;
        *iface = 0;
        return *data + *caplen;
    }
    if (end - pos < 32 || u32_at(b + pos, f->big) != 6)
        return -1;
    Py_ssize_t length = u32_at(b + pos + 4, f->big);
    if (length < 32 || length % 4 || length > (1 << 28) || end - pos < length)
        return -1;
    uint32_t i = u32_at(b + pos + 8, f->big);
    uint64_t when = (uint64_t)u32_at(b + pos + 12, f->big) << 32 | u32_at(b + pos + 16, f->big);
    *caplen = u32_at(b + pos + 20, f->big);
    if (i >= (uint32_t)f->count || *caplen > length - 32)
        return -1;
    *ts = (double)when * f->resolution[i];
    if (*ts > f->latest)
        return -1;
    *data = pos + 28;
    *iface = (int)i;
    return pos + length;
}

/* The original length of the frame of the record at pos (record_at read it). */
static long long
wire_length(const unsigned char *b, Py_ssize_t pos, const Format *f)
{
    return u32_at(b + pos + (f->pcapng ? 24 : 12), f->big);
}

/* FastPath.verdict_lines(tail[, separated]): pass_records may write verdict lines, `tail(direction, nic,
   decision, nsg, rule, reason, state, translated, detail)` giving what follows a line's flow: the JSON
   (ASCII: Verdict.json_line's), or with `separated` the tab-separated fields as UTF-8 bytes
   (Verdict.tsv_line's, for Parquet). */
static PyObject *
FastPath_verdict_lines(FastPath *self, PyObject *args)
{
    PyObject *tail_of;
    int separated = 0;
    if (!PyArg_ParseTuple(args, "O|p:verdict_lines", &tail_of, &separated))
        return NULL;
    if (!PyCallable_Check(tail_of)) {
        PyErr_SetString(PyExc_TypeError, "verdict_lines(tail): tail must be callable");
        return NULL;
    }
    PyObject *tails = PyDict_New();
    if (tails == NULL)
        return NULL;
    Py_XSETREF(self->tail_of, Py_NewRef(tail_of));
    Py_XSETREF(self->tails, tails);
    self->separated = separated;
    Py_RETURN_NONE;
}

/* What follows the flow in a verdict line with these nine fields (a new reference), made by the tail
   function the first time and kept. */
static PyObject *
tail_of_fields(FastPath *self, PyObject *const fields[9])
{
    PyObject *slot = PyTuple_New(9);
    if (slot == NULL)
        return NULL;
    for (int i = 0; i < 9; i++)
        PyTuple_SET_ITEM(slot, i, Py_NewRef(fields[i]));
    PyObject *tail = PyDict_GetItemWithError(self->tails, slot);
    if (tail != NULL) {
        Py_INCREF(tail);
    } else if (!PyErr_Occurred()) {
        tail = PyObject_Vectorcall(self->tail_of, fields, 9, NULL);
        if (tail != NULL && (self->separated ? !PyBytes_Check(tail) : !(PyUnicode_Check(tail) && PyUnicode_IS_ASCII(tail)))) {
            PyErr_SetString(PyExc_TypeError, self->separated ? "a tab-separated tail must be bytes"
                                                             : "a JSON tail must be an ASCII str");
            Py_CLEAR(tail);
        }
        if (tail != NULL && PyDict_GET_SIZE(self->tails) >= 4096)
            PyDict_Clear(self->tails);
        if (tail != NULL && PyDict_SetItem(self->tails, slot, tail) < 0)
            Py_CLEAR(tail);
    }
    Py_DECREF(slot);
    return tail;
}

/* `lines` is a pair of bytearrays (replay.NumberedLines): the lines' UTF-8, each ending in a newline, and
   their indexes as native int64s. */
static int
append_bytes(PyObject *array, const void *data, Py_ssize_t size)
{
    Py_ssize_t at = PyByteArray_GET_SIZE(array);
    if (PyByteArray_Resize(array, at + size) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(array) + at, data, size);
    return 0;
}

/* A record's packet index, a native int64, appended to `indexes` (a bytearray): several walks' lines, or
   pcap records, merge by it (workers). 0, or -1 on error. */
static int
append_index(PyObject *indexes, Py_ssize_t index)
{
    int64_t at = index;
    return append_bytes(indexes, &at, sizeof at);
}

/* (index, line) appended to `lines`. 0, or -1 on error. */
static int
append_numbered(PyObject *lines, Py_ssize_t index, PyObject *line)
{
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(line, &size);
    if (text == NULL || append_bytes(PyTuple_GET_ITEM(lines, 0), text, size) < 0 ||
            append_bytes(PyTuple_GET_ITEM(lines, 0), "\n", 1) < 0)
        return -1;
    return append_index(PyTuple_GET_ITEM(lines, 1), index);
}

static char *
put_endpoint(char *out, unsigned long address, unsigned port)
{
    for (int shift = 24; shift >= 0; shift -= 8) {
        out = put_number(out, address >> shift & 255);
        *out++ = shift ? '.' : ':';
    }
    return put_number(out, port);
}

/* repr(ts) for a capture's time in whole microseconds (pcap's, most of pcapng's), from 1 s to 2**31 s,
   without the digit search of PyOS_double_to_string (a fifth of writing verdict lines): the seconds,
   '.', the microseconds without trailing zeros, when ts is the double nearest that decimal (checked
   exactly); else NULL. Two strings of at most six decimals are 1e-6 apart, over four times the spacing
   of doubles there, so no other such string, and no shorter one, reads back as ts. */
static char *
put_time(char *out, double ts)
{
#ifdef __SIZEOF_INT128__
    if (!(ts >= 1.0 && ts < 2147483648.0))
        return NULL;
    int exponent;
    uint64_t m = (uint64_t)ldexp(frexp(ts, &exponent), 53);  /* ts = m * 2**-shift, exactly */
    int shift = 53 - exponent;
    if (m == (uint64_t)1 << 52)  /* a power of two: the spacing below it is half that above */
        return NULL;
    double whole = floor(ts);
    unsigned long long seconds = (unsigned long long)whole, micros = (unsigned long long)llround((ts - whole) * 1e6);
    unsigned __int128 decimal = ((unsigned __int128)(seconds * 1000000 + micros)) << shift;
    unsigned __int128 exact = (unsigned __int128)m * 1000000;
    if ((decimal > exact ? decimal - exact : exact - decimal) >= 500000)  /* not within half a spacing */
        return NULL;
    if (micros == 1000000) {
        seconds += 1;
        micros = 0;
    }
    out = put_number(out, seconds);
    *out++ = '.';
    int digits = 6;
    while (digits > 1 && micros % 10 == 0) {
        micros /= 10;
        digits -= 1;
    }
    for (int i = digits - 1; i >= 0; i--, micros /= 10)
        out[i] = (char)('0' + micros % 10);
    return out + digits;
#else
    (void)out;
    (void)ts;
    return NULL;
#endif
}

/* {"index": I, "ts": T, "flow": "tcp A:P > B:Q", then the tail: Verdict.json_line's line; `separated`,
   I<tab>T<tab>tcp A:P > B:Q<tab>, then the tail: Verdict.tsv_line's; appended to `lines` with its index.
   0, or -1 on error. */
static int
append_line(PyObject *lines, Py_ssize_t index, double ts, const Common *c, PyObject *tail, int separated)
{
    char head[192], *out = head;
    if (!separated) {
        memcpy(out, "{\"index\": ", 10);
        out += 10;
    }
    out = put_number(out, (unsigned long long)index);
    if (separated)
        *out++ = '\t';
    else {
        memcpy(out, ", \"ts\": ", 8);
        out += 8;
    }
    char *after = put_time(out, ts);
    if (after != NULL)
        out = after;
    else {
        char *when = PyOS_double_to_string(ts, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (when == NULL)
            return -1;
        size_t n = strlen(when);
        if (n > 64) {
            PyMem_Free(when);
            PyErr_SetString(PyExc_ValueError, "a timestamp too long to write");
            return -1;
        }
        memcpy(out, when, n);
        out += n;
        PyMem_Free(when);
    }
    if (separated) {
        memcpy(out, c->proto == 6 ? "\ttcp " : "\tudp ", 5);
        out += 5;
    } else {
        memcpy(out, c->proto == 6 ? ", \"flow\": \"tcp " : ", \"flow\": \"udp ", 15);
        out += 15;
    }
    out = put_endpoint(out, c->src, c->sport);
    memcpy(out, " > ", 3);
    out = put_endpoint(out + 3, c->dst, c->dport);
    if (separated)
        *out++ = '\t';
    else {
        memcpy(out, "\", ", 3);
        out += 3;
    }
    Py_ssize_t first = out - head;
    Py_ssize_t rest = separated ? PyBytes_GET_SIZE(tail) : PyUnicode_GET_LENGTH(tail);
    const void *rest_data = separated ? (const void *)PyBytes_AS_STRING(tail) : PyUnicode_1BYTE_DATA(tail);
    PyObject *text = PyTuple_GET_ITEM(lines, 0);
    Py_ssize_t at = PyByteArray_GET_SIZE(text);
    if (PyByteArray_Resize(text, at + first + rest + 1) < 0)
        return -1;
    char *to = PyByteArray_AS_STRING(text) + at;
    memcpy(to, head, first);
    memcpy(to + first, rest_data, rest);
    to[first + rest] = '\n';
    return append_index(PyTuple_GET_ITEM(lines, 1), index);
}

/* The verdict line of a recent flow's packet that passed (its entry, its flow's state after it), as
   Verdict.json_line writes it: the tail is kept in the entry while the state stays. 0, or -1. */
static int
append_known_line(FastPath *self, PyObject *lines, Py_ssize_t index, double ts, const Common *c, Entry *e,
                  PyObject *state)
{
    if (e->line_state != state || e->line_tail == NULL || e->line_separated != self->separated) {
        PyObject *head = e->head, *value = PyObject_GetAttr(state, s_value);
        if (value == NULL)
            return -1;
        PyObject *fields[9] = {PyTuple_GET_ITEM(head, 0), PyTuple_GET_ITEM(head, 1), s_allow, PyTuple_GET_ITEM(head, 2),
                               PyTuple_GET_ITEM(head, 3), s_flow, value, e->translated, s_empty};
        PyObject *tail = tail_of_fields(self, fields);
        Py_DECREF(value);
        if (tail == NULL)
            return -1;
        Py_XSETREF(e->line_tail, tail);
        Py_XSETREF(e->line_state, Py_NewRef(state));
        e->line_separated = (uint8_t)self->separated;
    }
    return append_line(lines, index, ts, c, e->line_tail, self->separated);
}

/* The verdict line of a new flow's first packet, from its Verdict (a tuple of the contract's fields). */
static int
append_verdict_line(FastPath *self, PyObject *lines, Py_ssize_t index, double ts, const Common *c, PyObject *v)
{
    if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 12 || PyTuple_GET_ITEM(v, 8) == Py_None) {
        PyObject *at = PyLong_FromSsize_t(index);  /* not the common verdict: its own method writes it */
        PyObject *line = at != NULL ? PyObject_CallMethodOneArg(v, self->separated ? s_tsv_line : s_json_line, at) : NULL;
        Py_XDECREF(at);
        int result = line != NULL ? append_numbered(lines, index, line) : -1;
        Py_XDECREF(line);
        return result;
    }
    PyObject *fields[9] = {PyTuple_GET_ITEM(v, 3), PyTuple_GET_ITEM(v, 4), PyTuple_GET_ITEM(v, 1), PyTuple_GET_ITEM(v, 5),
                           PyTuple_GET_ITEM(v, 6), PyTuple_GET_ITEM(v, 2), PyTuple_GET_ITEM(v, 7), PyTuple_GET_ITEM(v, 9),
                           PyTuple_GET_ITEM(v, 10)};
    PyObject *tail = tail_of_fields(self, fields);
    if (tail == NULL)
        return -1;
    int result = append_line(lines, index, ts, c, tail, self->separated);
    Py_DECREF(tail);
    return result;
}

/* The pcap record of a frame the walk took, as replay.pcap_record makes it (its time in microseconds,
   rounded half to even as Python's round, and the larger of its two lengths), appended to `frames`: a list
   of bytes, or a bytearray of records one after another. The frame's length on the wire is in the 4 bytes
   before it, in pcap and pcapng records alike. 0, or -1. */
static int
append_frame(PyObject *frames, double ts, const unsigned char *frame, Py_ssize_t caplen, int big)
{
    double micros = nearbyint(ts * 1e6);
    if (!(micros >= 0.0 && micros < 4294967296e6)) {
        PyErr_SetString(PyExc_ValueError, "a time a pcap record cannot hold");
        return -1;
    }
    unsigned long long us = (unsigned long long)micros;
    uint32_t wirelen = u32_at(frame - 4, big);
    uint32_t header[4] = {(uint32_t)(us / 1000000), (uint32_t)(us % 1000000), (uint32_t)caplen,
                          wirelen > (uint32_t)caplen ? wirelen : (uint32_t)caplen};
    unsigned char head[16];
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++)
            head[i * 4 + k] = (unsigned char)(header[i] >> (8 * k));
    if (PyByteArray_Check(frames))  /* a worker's records, one after the other */
        return append_bytes(frames, head, 16) < 0 ? -1 : append_bytes(frames, frame, caplen);
    PyObject *record = PyBytes_FromStringAndSize(NULL, 16 + caplen);
    if (record == NULL)
        return -1;
    memcpy(PyBytes_AS_STRING(record), head, 16);
    memcpy(PyBytes_AS_STRING(record) + 16, frame, (size_t)caplen);
    int result = PyList_Append(frames, record);
    Py_DECREF(record);
    return result;
}

/* append_frame, and with `placed` (a bytearray) the record's packet index after it (append_index). */
static int
append_placed_frame(PyObject *frames, PyObject *placed, Py_ssize_t index, double ts, const unsigned char *frame,
                    Py_ssize_t caplen, int big)
{
    if (append_frame(frames, ts, frame, caplen, big) < 0)
        return -1;
    return placed == NULL ? 0 : append_index(placed, index);
}

/* -- Tally: whatif's counts of its changed flows, and the report's of its flows by minute ------- */

/* A flow by one captured 5-tuple that names it (direction-independent, IPv4), and what the walk since
   the last flush added to it: the counts go to Python when a walk ends (whatif) or when Python takes
   them (the report), so a packet costs a probe, not Python objects. */
typedef struct {
    uint32_t src, dst;
    uint16_t sport, dport;
    uint8_t proto, dirty;
    PyObject *flow;  /* whatif's list [.., .., first, last, packets, bytes, ..], or what the report watches;
                        NULL: a free slot; None: a captured key that names a flow not counted */
    double first, last;
    long long packets, bytes;
    uint64_t order;  /* when its last packet was counted: of several keys of one flow, the latest sets its time */
    long long minute;  /* by minute: the minute of the packets counted since the slot was last closed */
} TallySlot;

/* What a slot counted in one minute, closed: the report takes it from here. */
typedef struct {
    PyObject *flow;
    long long minute, packets, bytes;
    double first, last;
} TallyEntry;

typedef struct {
    PyObject_HEAD
    TallySlot *slots;
    size_t mask;
    Py_ssize_t used;
    size_t *dirty;     /* the slots counted since the last flush, each once */
    Py_ssize_t n_dirty;
    uint64_t counted;  /* packets counted: the slots' order */
    int by_minute;     /* the report's: counts kept apart by minute until taken, and any watched object */
    TallyEntry *closed;
    Py_ssize_t n_closed, closed_room;
} Tally;

static TallySlot *sorting;

static int
by_order(const void *a, const void *b)
{
    uint64_t x = sorting[*(const size_t *)a].order, y = sorting[*(const size_t *)b].order;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int
Tally_init(Tally *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"by_minute", NULL};
    int by_minute = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$p:Tally", names, &by_minute))
        return -1;
    if (self->slots != NULL) {
        if (by_minute != self->by_minute) {
            PyErr_SetString(PyExc_ValueError, "a Tally's by_minute is set once");
            return -1;
        }
        return 0;
    }
    self->by_minute = by_minute;
    self->mask = 63;
    self->slots = PyMem_Calloc(self->mask + 1, sizeof(TallySlot));
    self->dirty = PyMem_Malloc((self->mask + 1) * sizeof(size_t));
    if (self->slots == NULL || self->dirty == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
Tally_dealloc(Tally *self)
{
    for (size_t i = 0; self->slots != NULL && i <= self->mask; i++)
        Py_XDECREF(self->slots[i].flow);
    for (Py_ssize_t i = 0; i < self->n_closed; i++)
        Py_DECREF(self->closed[i].flow);
    PyMem_Free(self->slots);
    PyMem_Free(self->dirty);
    PyMem_Free(self->closed);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static TallySlot *
tally_slot(TallySlot *slots, size_t mask, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto)
{
    size_t i = slot_hash(src, dst, sport, dport, proto) & mask;
    for (;;) {
        TallySlot *s = &slots[i];
        if (s->flow == NULL || (s->src == src && s->dst == dst && s->sport == sport && s->dport == dport &&
                                s->proto == proto))
            return s;
        i = (i + 1) & mask;
    }
}

/* Every flow counted since the last flush gets its last time, packets and bytes (as whatif._count
   adds them): the slots latest counted last, as a flow named by two keys (both sides of a translation)
   ends with the time of its latest packet; on error the rest stay counted here. */
static int
Tally_flush(Tally *self)
{
    sorting = self->slots;  /* the GIL is held: no other flush runs meanwhile */
    qsort(self->dirty, (size_t)self->n_dirty, sizeof(size_t), by_order);
    while (self->n_dirty > 0) {
        TallySlot *s = &self->slots[self->dirty[self->n_dirty - 1]];
        PyObject *flow = s->flow;
        if (PyList_GET_SIZE(flow) < 6) {
            PyErr_SetString(PyExc_TypeError, "a changed flow must be a list of at least 6 items");
            return -1;
        }
        PyObject *when = PyFloat_FromDouble(s->last);
        PyObject *n = when != NULL ? PyLong_FromLongLong(s->packets) : NULL;
        PyObject *packets = n != NULL ? PyNumber_Add(PyList_GET_ITEM(flow, 4), n) : NULL;
        Py_XDECREF(n);
        n = packets != NULL ? PyLong_FromLongLong(s->bytes) : NULL;
        PyObject *bytes = n != NULL ? PyNumber_Add(PyList_GET_ITEM(flow, 5), n) : NULL;
        Py_XDECREF(n);
        if (bytes == NULL) {
            Py_XDECREF(when);
            Py_XDECREF(packets);
            return -1;
        }
        PyList_SetItem(flow, 3, when);
        PyList_SetItem(flow, 4, packets);
        PyList_SetItem(flow, 5, bytes);
        s->packets = s->bytes = 0;
        s->dirty = 0;
        self->n_dirty--;
    }
    return 0;
}

/* By minute: a slot's counts since it was last closed become an entry, and the slot counts from zero. */
static int
close_slot(Tally *self, TallySlot *s)
{
    if (self->n_closed == self->closed_room) {
        Py_ssize_t room = self->closed_room ? self->closed_room * 2 : 256;
        TallyEntry *closed = PyMem_Realloc(self->closed, (size_t)room * sizeof(TallyEntry));
        if (closed == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->closed = closed;
        self->closed_room = room;
    }
    self->closed[self->n_closed++] = (TallyEntry){Py_NewRef(s->flow), s->minute, s->packets, s->bytes, s->first,
                                                  s->last};
    s->packets = s->bytes = 0;
    return 0;
}

/* By minute: every slot counted since the last close_all closed, and the dirty list emptied. */
static int
close_all(Tally *self)
{
    while (self->n_dirty > 0) {
        TallySlot *s = &self->slots[self->dirty[self->n_dirty - 1]];
        if (s->packets > 0 && close_slot(self, s) < 0)
            return -1;
        s->dirty = 0;
        self->n_dirty--;
    }
    return 0;
}

/* The packets of this direction-independent IPv4 5-tuple (lower endpoint first) count to `flow` from now
   on. 0, or -1 on error. */
static int
watch_numbers(Tally *self, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto, PyObject *flow)
{
    if (!self->by_minute && Tally_flush(self) < 0)
        return -1;
    if ((size_t)(self->used + 1) * 2 > self->mask + 1) {
        if (self->by_minute && close_all(self) < 0)  /* the dirty list names slots by where they are */
            return -1;
        size_t mask = self->mask * 2 + 1;
        TallySlot *slots = PyMem_Calloc(mask + 1, sizeof(TallySlot));
        size_t *dirty = PyMem_Realloc(self->dirty, (mask + 1) * sizeof(size_t));
        if (slots == NULL || dirty == NULL) {
            PyMem_Free(slots);
            if (dirty != NULL)
                self->dirty = dirty;
            PyErr_NoMemory();
            return -1;
        }
        self->dirty = dirty;
        for (size_t i = 0; i <= self->mask; i++) {
            TallySlot *s = &self->slots[i];
            if (s->flow != NULL)
                *tally_slot(slots, mask, s->src, s->dst, s->sport, s->dport, s->proto) = *s;
        }
        PyMem_Free(self->slots);
        self->slots = slots;
        self->mask = mask;
    }
    TallySlot *s = tally_slot(self->slots, self->mask, src, dst, sport, dport, proto);
    if (s->flow == NULL) {
        self->used++;
        *s = (TallySlot){.src = src, .dst = dst, .sport = sport, .dport = dport, .proto = proto};
    } else if (self->by_minute && s->packets > 0 && s->flow != flow && close_slot(self, s) < 0) {
        return -1;  /* what was counted before goes to what was watched then */
    }
    Py_XSETREF(s->flow, Py_NewRef(flow));
    return 0;
}

/* watch(key, flow): the packets whose direction-independent 5-tuple is `key` count to `flow` (a list
   of at least 6 items), or to nothing when flow is None; a key that is not an IPv4 5-tuple is never
   in a common frame, so it is left to the Python reader. */
static PyObject *
Tally_watch(Tally *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "watch(key, flow)");
        return NULL;
    }
    PyObject *flow = args[1];
    if (!self->by_minute && flow != Py_None && (!PyList_Check(flow) || PyList_GET_SIZE(flow) < 6)) {
        PyErr_SetString(PyExc_TypeError, "a changed flow must be a list of at least 6 items, or None");
        return NULL;
    }
    uint32_t src, dst;
    uint16_t sport, dport;
    uint8_t proto;
    int numbers = numbers_of(args[0], &src, &dst, &sport, &dport, &proto);
    if (numbers <= 0)
        return numbers < 0 ? NULL : Py_NewRef(Py_None);
    if (src > dst || (src == dst && sport > dport)) {
        uint32_t a = src; src = dst; dst = a;
        uint16_t p = sport; sport = dport; dport = p;
    }
    if (watch_numbers(self, src, dst, sport, dport, proto, flow) < 0)
        return NULL;
    return Py_NewRef(Py_None);
}

/* taken(all): the report's counts of the packets walks took, as (watched, minute, packets, bytes, first
   time, last time) per slot and minute: the minutes closed so far, or with `all` every
   count held. Counts of one flow may come in several entries, even for one minute: they add up. */
static PyObject *
Tally_taken(Tally *self, PyObject *everything)
{
    if (!self->by_minute) {
        PyErr_SetString(PyExc_TypeError, "taken() is a Tally(by_minute=True)'s");
        return NULL;
    }
    int all = PyObject_IsTrue(everything);
    if (all < 0 || (all && close_all(self) < 0))
        return NULL;
    PyObject *list = PyList_New(self->n_closed);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->n_closed; i++) {
        TallyEntry *e = &self->closed[i];
        PyObject *item = Py_BuildValue("(OLLLdd)", e->flow, e->minute, e->packets, e->bytes, e->first, e->last);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    for (Py_ssize_t i = 0; i < self->n_closed; i++)
        Py_DECREF(self->closed[i].flow);
    self->n_closed = 0;
    return list;
}

static PyMethodDef Tally_methods[] = {
    {"watch", (PyCFunction)(void (*)(void))Tally_watch, METH_FASTCALL,
     "watch(key, flow): count the packets of this direction-independent IPv4 5-tuple to flow (or to nothing: None)"},
    {"taken", (PyCFunction)Tally_taken, METH_O,
     "taken(all): by minute, the counts closed (all: and held) since the last call, as (flow, minute, packets, "
     "bytes, first, last) tuples"},
    {NULL},
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataplane._fastpath.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "flows by their captured 5-tuples: whatif's changed flows, for FastPath.pass_pair: Tally(); the "
              "report's, for FastPath.pass_records: Tally(by_minute=True)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tally_init,
    .tp_dealloc = (destructor)Tally_dealloc,
    .tp_methods = Tally_methods,
};

/* The report's tally a walk is given: a Tally(by_minute=True) in *tally, or NULL for None. 0, or -1 with
   TypeError for anything else. */
static int
minute_tally_of(PyObject *arg, Tally **tally)
{
    if (arg == Py_None)
        return 0;
    if (!Py_IS_TYPE(arg, &TallyType) || !((Tally *)arg)->by_minute || ((Tally *)arg)->slots == NULL) {
        PyErr_SetString(PyExc_TypeError, "tally must be a Tally(by_minute=True) or None");
        return -1;
    }
    *tally = (Tally *)arg;
    return 0;
}

/* A slot counted since the last flush (whatif) or close (the report) goes on the dirty list, once. */
static inline void
mark_dirty(Tally *tally, TallySlot *s)
{
    if (!s->dirty) {
        s->dirty = 1;
        tally->dirty[tally->n_dirty++] = (size_t)(s - tally->slots);
    }
}

/* The minute of a time as report.Traffic computes it, int(ts // 60): CPython's float floor division, whose
   other branches a time that is not negative never takes (ts - mod is then an exact multiple of 60). */
static long long
minute_of(double ts)
{
    return (long long)((ts - fmod(ts, 60.0)) / 60.0);
}

/* By minute: the slot the report watches for a frame's flow, or NULL when it watches none (Python must
   see the packet). */
static TallySlot *
watched_slot(Tally *tally, const Common *c)
{
    int swap = second_endpoint_lower(c);
    TallySlot *s = tally_slot(tally->slots, tally->mask, swap ? c->dst : c->src, swap ? c->src : c->dst,
                              swap ? c->dport : c->sport, swap ? c->sport : c->dport, c->proto);
    return s->flow == NULL || s->flow == Py_None ? NULL : s;
}

/* By minute: a known flow's packet the walk took, counted to its slot's minute; a packet of another
   minute first closes what the slot holds. */
static int
tally_by_minute(Tally *tally, TallySlot *s, double ts, long long wirelen)
{
    if (s == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a flow the tally watched was dropped during a walk");
        return -1;
    }
    long long minute = minute_of(ts);
    if (s->packets > 0 && s->minute != minute && close_slot(tally, s) < 0)
        return -1;
    if (s->packets == 0) {
        s->minute = minute;
        s->first = s->last = ts;
    } else if (ts < s->first) {
        s->first = ts;
    } else if (ts > s->last) {
        s->last = ts;
    }
    s->packets += 1;
    s->bytes += wirelen;
    mark_dirty(tally, s);
    return 0;
}

/* The report's walk decided a new flow: (verdict, its frame's length on the wire, its place, placeholder)
   appended to `decided`. An allowed flow's verdict with evaluations has its key watched from here on
   through the placeholder, [None], which Python fills with what the flow's packets count to
   (report.Traffic.decided_in_c), so the walk takes the flow's next packets at once. 0, or -1. */
static int
append_decided(PyObject *decided, Tally *tally, const Common *c, PyObject *verdict, long long wirelen, Py_ssize_t at)
{
    PyObject *placeholder = Py_NewRef(Py_None);
    if (PyTuple_Check(verdict) && PyTuple_GET_SIZE(verdict) == 12 && PyTuple_Check(PyTuple_GET_ITEM(verdict, 11)) &&
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(verdict, 11)) > 0) {
        int allowed = PyObject_RichCompareBool(PyTuple_GET_ITEM(verdict, 1), s_allow, Py_EQ);
        if (allowed < 0) {
            Py_DECREF(placeholder);
            return -1;
        }
        if (allowed) {
            int swap = second_endpoint_lower(c);
            Py_SETREF(placeholder, PyList_New(1));
            if (placeholder == NULL)
                return -1;
            PyList_SET_ITEM(placeholder, 0, Py_NewRef(Py_None));
            if (watch_numbers(tally, swap ? c->dst : c->src, swap ? c->src : c->dst, swap ? c->dport : c->sport,
                              swap ? c->sport : c->dport, c->proto, placeholder) < 0) {
                Py_DECREF(placeholder);
                return -1;
            }
        }
    }
    PyObject *item = Py_BuildValue("(OLnN)", verdict, wirelen, at, placeholder);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(decided, item);
    Py_DECREF(item);
    return failed;
}

/* FastPath.pass_frames(frames, until, limit[, tally]): replay's loop over frames (several captures merged by
   time): the packets of recent flows pass here, up to the first frame Python must see, which is returned; with
   `tally` (the report's), only those of the flows it watches, each counted to its flow's minute. */
static PyObject *
FastPath_pass_frames(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "pass_frames(frames, until, limit[, tally])");
        return NULL;
    }
    Tally *tally = NULL;
    if (nargs == 4 && minute_tally_of(args[3], &tally) < 0)
        return NULL;
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
    PyObject *frame = NULL, *state;
    Entry *entry;
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
        if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) < (tally != NULL ? 4 : 3)) {
            Py_DECREF(frame);
            PyErr_SetString(PyExc_TypeError, "frames must yield (ts, linktype, data, ...) tuples, with a tally "
                            "(ts, linktype, data, length on the wire)");
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
                parse(PyTuple_GET_ITEM(frame, 2), &c) && (tally == NULL || watched_slot(tally, &c) != NULL)) {
            int done = pass_recent(self, &c, ts, &entry, &state);
            if (done < 0) {
                Py_DECREF(frame);
                return NULL;
            }
            if (done) {
                int counted = 0;
                if (tally != NULL) {  /* found again: pass_recent ran Python code */
                    long long wirelen = PyLong_AsLongLong(PyTuple_GET_ITEM(frame, 3));
                    counted = wirelen == -1 && PyErr_Occurred() ? -1
                                                                : tally_by_minute(tally, watched_slot(tally, &c), ts, wirelen);
                }
                entry_release(entry);
                Py_DECREF(state);
                if (counted < 0) {
                    Py_DECREF(frame);
                    return NULL;
                }
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

static int append_run(PyObject *decided, PyObject *result, Py_ssize_t count);

/* replay.Capture's records straight from its buffer: the records of recent flows pass here without a
   Python object, the first packets of new flows from outside to a NIC go to Dataplane._new_at_nic (their
   verdicts are returned, for the rule hits; with `hits_only`, such a flow may be decided here and its
   policy result returned instead: as (result, count) pairs, consecutive flows given the same result object
   sharing one), and the first other record stops the walk where it starts. With
   `lines` (replay.NumberedLines), the verdict line and index of each packet taken are appended to it, `index` the first
   record's place in the capture; with `frames` (a list), the pcap record of each allowed packet taken (`frames` a pair
   of bytearrays, replay.NumberedRecords: the records one after another, and each one's index as lines have theirs).
   With `tally` (a Tally(by_minute=True), the report's), the walk takes the packets of the flows it watches, counting
   each to its flow's minute, and decides new flows, each given back with its frame's length and place
   (append_decided); it stops at another flow's packet. */
static PyObject *
FastPath_pass_records(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 6 || nargs == 9 || nargs > 12) {
        PyErr_SetString(PyExc_TypeError, "pass_records(buffer, pos, format, last, until, limit[, shard[, hits_only"
                        "[, lines, index[, frames[, tally]]]]])");
        return NULL;
    }
    PyObject *lines = nargs >= 10 && args[8] != Py_None ? args[8] : NULL;
    PyObject *frames = nargs >= 11 && args[10] != Py_None ? args[10] : NULL, *placed = NULL;
    Tally *tally = NULL;
    if (nargs == 12 && minute_tally_of(args[11], &tally) < 0)
        return NULL;
    if (frames != NULL && PyTuple_Check(frames) && PyTuple_GET_SIZE(frames) == 2 &&
            PyByteArray_Check(PyTuple_GET_ITEM(frames, 0)) && PyByteArray_Check(PyTuple_GET_ITEM(frames, 1))) {
        placed = PyTuple_GET_ITEM(frames, 1);
        frames = PyTuple_GET_ITEM(frames, 0);
    } else if (frames != NULL && !PyList_Check(frames)) {
        PyErr_SetString(PyExc_TypeError, "frames must be a list, or a pair of bytearrays (records, indexes)");
        return NULL;
    }
    Py_ssize_t index = lines != NULL || placed != NULL || tally != NULL ? PyLong_AsSsize_t(args[9]) : 0;
    if (index == -1 && PyErr_Occurred())
        return NULL;
    if (lines != NULL && (!PyTuple_Check(lines) || PyTuple_GET_SIZE(lines) != 2 ||
                          !PyByteArray_Check(PyTuple_GET_ITEM(lines, 0)) ||
                          !PyByteArray_Check(PyTuple_GET_ITEM(lines, 1)) || self->tails == NULL)) {
        PyErr_SetString(PyExc_TypeError, "lines must be a pair of bytearrays, after verdict_lines(tail_of)");
        return NULL;
    }
    ShardFilter *shard = nargs >= 7 && args[6] != Py_None ? (ShardFilter *)args[6] : NULL;
    if (shard != NULL && !Py_IS_TYPE(args[6], &ShardFilterType)) {
        PyErr_SetString(PyExc_TypeError, "shard must be a ShardFilter or None");
        return NULL;
    }
    int hits_only = nargs >= 8 ? PyObject_IsTrue(args[7]) : 0;
    if (hits_only < 0)
        return NULL;
    if (!ready(self))
        return NULL;
    Py_buffer view;
    Py_ssize_t pos, limit;
    Format f;
    double last, until;
    if (walk_arguments(args, &view, &pos, &f, &last, &until, &limit) < 0)
        return NULL;
    PyObject *decided = PyList_New(0);
    if (decided == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *b = view.buf;
    Py_ssize_t end = view.len, passed = 0, backwards = 0;
    Entry *entry;
    PyObject *state;
    int error = 0, stop = 0;
    int runs = hits_only && lines == NULL;
    PyObject *run_of = NULL;  /* with runs: the result of the flows since the last pair appended */
    Py_ssize_t run_length = 0;
    while (passed < limit) {
        Py_ssize_t data, caplen;
        double ts;
        int iface;
        Py_ssize_t next = record_at(b, end, pos, &f, &ts, &data, &caplen, &iface);
        if (next < 0 || !(ts < until && ts < self->next_sweep && f.ethernet[iface]))
            break;
        if (shard != NULL) {
            long which = frame_shard(shard, b + data, caplen);
            if (which < 0)
                break;
            if (which != shard->index) {  /* another shard's: it only moves this one's clock */
                if (ts < last)
                    backwards += 1;
                last = ts;
                passed += 1;
                pos = next;
                continue;
            }
        }
        Common c;
        if (!parse_raw(b + data, caplen, &c))
            break;
        if (tally != NULL && watched_slot(tally, &c) == NULL) {
            Entry *known;
            int live = live_entry(self, &c, ts, &known);
            if (live != 0) {  /* a known flow the report does not watch: Python counts its packets */
                error = live < 0;
                break;
            }
        }
        int done = pass_recent(self, &c, ts, &entry, &state);
        if (done < 0) {
            error = 1;
            break;
        }
        if (done) {
            if (lines != NULL && append_known_line(self, lines, index + passed, ts, &c, entry, state) < 0)
                error = 1;
            if (frames != NULL && !error &&
                    append_placed_frame(frames, placed, index + passed, ts, b + data, caplen, f.big) < 0)
                error = 1;
            if (tally != NULL && !error &&  /* found again: pass_recent ran Python code */
                    tally_by_minute(tally, watched_slot(tally, &c), ts, wire_length(b, pos, &f)) < 0)
                error = 1;
            entry_release(entry);
            Py_DECREF(state);
            if (error)
                break;
        } else if (self->new_flows == STOP_BEFORE) {
            break;
        } else {
            /* the first packet of a new flow the Python path would send straight to a decision, as in process;
               with lines, its Verdict writes its own (Verdict.json_line) */
            PyObject *when = PyFloat_FromDouble(ts);
            self->walk_taken = passed;
            PyObject *verdict = when != NULL ? hand_off(self, &c, ts, when, runs) : NULL;
            self->walk_taken = -1;
            Py_XDECREF(when);
            if (verdict == NULL) {
                error = PyErr_Occurred() != NULL;
                break;
            }
            if (runs && verdict != run_of) {
                if (run_of != NULL && append_run(decided, run_of, run_length) < 0) {
                    Py_DECREF(verdict);
                    error = 1;
                    break;
                }
                Py_XSETREF(run_of, Py_NewRef(verdict));
                run_length = 0;
            }
            if (runs)
                run_length += 1;
            else if (tally != NULL ? append_decided(decided, tally, &c, verdict, wire_length(b, pos, &f), index + passed) < 0
                                   : PyList_Append(decided, verdict) < 0) {
                Py_DECREF(verdict);
                error = 1;
                break;
            }
            if (lines != NULL)
                error = append_verdict_line(self, lines, index + passed, ts, &c, verdict) < 0;
            if (!error && (frames != NULL || self->new_flows == STOP_AFTER_DENY) && PyTuple_Check(verdict) &&
                    PyTuple_GET_SIZE(verdict) > 1) {
                int allowed = PyObject_RichCompareBool(PyTuple_GET_ITEM(verdict, 1), s_allow, Py_EQ);
                error = allowed < 0 || (allowed == 1 && frames != NULL &&
                                        append_placed_frame(frames, placed, index + passed, ts, b + data, caplen,
                                                            f.big) < 0);
                stop = allowed == 0 && self->new_flows == STOP_AFTER_DENY;
            }
            Py_DECREF(verdict);
            if (error)
                break;
        }
        if (ts < last)
            backwards += 1;
        last = ts;
        passed += 1;
        pos = next;
        if (stop)  /* a denied new flow, taken: the walk ends with it */
            break;
    }
    PyBuffer_Release(&view);
    if (!error && run_of != NULL && append_run(decided, run_of, run_length) < 0)
        error = 1;
    Py_XDECREF(run_of);
    if (error) {
        Py_DECREF(decided);
        return NULL;
    }
    return Py_BuildValue("(nndnN)", passed, pos, last, backwards, decided);
}

/* (result, count) appended to a walk's list of decided flows. */
static int
append_run(PyObject *decided, PyObject *result, Py_ssize_t count)
{
    PyObject *pair = Py_BuildValue("(On)", result, count);
    if (pair == NULL)
        return -1;
    int failed = PyList_Append(decided, pair);
    Py_DECREF(pair);
    return failed;
}

static PyTypeObject FastPathType;

/* A packet of a flow the tally watches: its last time, a packet and the frame's length, as whatif._count
   adds them. */
static void
tally_count(Tally *tally, const Common *c, double ts, Py_ssize_t length)
{
    TallySlot *s = watched_slot(tally, c);
    if (s == NULL)
        return;
    s->last = ts;
    s->packets += 1;
    s->bytes += length;
    s->order = ++tally->counted;
    mark_dirty(tally, s);
}

/* One dataplane's part of a record: 1 when it took it (a known flow's packet, or a new flow it decided:
   *verdict is then that Verdict), 0 when Python must decide it, -1 on error. */
static int
take_record(FastPath *self, const Common *c, double ts, PyObject **verdict)
{
    Entry *entry;
    PyObject *state;
    *verdict = NULL;
    int done = pass_recent(self, c, ts, &entry, &state);
    if (done < 0)
        return -1;
    if (done) {
        entry_release(entry);
        Py_DECREF(state);
        return 1;
    }
    if (self->new_flows == STOP_BEFORE)
        return 0;
    PyObject *when = PyFloat_FromDouble(ts);
    *verdict = when != NULL ? hand_off(self, c, ts, when, 0) : NULL;
    Py_XDECREF(when);
    return *verdict != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
}

/* Whether whatif's notes of a record's two verdicts (new flows' Verdicts, or NULL: passed as a known flow's)
   would learn nothing, settling here the common flow that both dataplanes decide alike at its first
   packet: untranslated, named by its own 5-tuple (not in `aliases`), met by neither before (in neither
   of `firsts`, the verdicts waiting for the other dataplane's, nor in `compared`), the same decision,
   NSG, rule and reason in both. Such a flow joins `compared`, as whatif._Flows.noted would compare it
   and find it unchanged; a verdict of a flow already compared is a note that changes nothing. 1 when
   settled, 0 when Python must note them, -1 on error. */
static int
settled(FastPath *self, PyObject *const known[4], const Common *c, PyObject *mine, PyObject *theirs)
{
    PyObject *compared = known[0], *firsts0 = known[1], *firsts1 = known[2], *aliases = known[3];
    PyObject *verdicts[2] = {mine, theirs};
    for (int i = 0; i < 2; i++) {
        PyObject *v = verdicts[i];
        if (v != NULL && !(Py_IS_TYPE(v, (PyTypeObject *)self->verdict_type) && PyTuple_GET_ITEM(v, 9) == Py_None))
            return 0;
    }
    PyObject *key = make_key(c, 1);
    if (key == NULL)
        return -1;
    int result = PyDict_Contains(aliases, key);
    if (result == 0) {
        result = PySet_Contains(compared, key);
        if (result == 0 && mine != NULL && theirs != NULL) {
            int pending = PyDict_Contains(firsts0, key);
            if (pending == 0)
                pending = PyDict_Contains(firsts1, key);
            result = pending < 0 ? -1 : 0;
            static const int fate[4] = {1, 5, 6, 2};  /* decision, nsg, rule, reason */
            int same = pending == 0;
            for (int i = 0; same == 1 && i < 4; i++)
                same = PyObject_RichCompareBool(PyTuple_GET_ITEM(mine, fate[i]), PyTuple_GET_ITEM(theirs, fate[i]), Py_EQ);
            if (pending == 0 && same < 0)
                result = -1;
            else if (pending == 0 && same == 1)
                result = PySet_Add(compared, key) < 0 ? -1 : 1;
        }
    } else if (result == 1) {
        result = 0;
    }
    Py_DECREF(key);
    return result;
}

/* A record of whatif's walk through both dataplanes (FastPath.pass_pair): 1 when both took it (noted,
   counted), 0 when Python must decide it for both, or for `other` alone (*half: this one's part), -1 on
   error. */
static int
take_pair(FastPath *self, FastPath *other, const unsigned char *frame, Py_ssize_t caplen, double ts, Tally *tally,
          PyObject *noted, PyObject *const known[4], PyObject **half)
{
    Common c;
    if (!parse_raw(frame, caplen, &c))
        return 0;
    PyObject *mine, *theirs;
    int took = take_record(self, &c, ts, &mine);
    if (took <= 0)
        return took;
    took = take_record(other, &c, ts, &theirs);
    if (took <= 0) {
        if (took == 0 && (*half = PyTuple_Pack(1, mine != NULL ? mine : Py_None)) == NULL)
            took = -1;
        Py_XDECREF(mine);
        return took;
    }
    if (mine != NULL || theirs != NULL) {
        int quiet = settled(self, known, &c, mine, theirs);
        PyObject *heard = quiet != 0 ? NULL : PyObject_CallFunctionObjArgs(
            noted, mine != NULL ? mine : Py_None, theirs != NULL ? theirs : Py_None, NULL);
        Py_XDECREF(mine);
        Py_XDECREF(theirs);
        if (quiet < 0 || (quiet == 0 && heard == NULL))
            return -1;
        Py_XDECREF(heard);
    }
    if (tally->used)
        tally_count(tally, &c, ts, caplen);
    return 1;
}

/* whatif's walk: each record read once and taken by this dataplane and `other` (before and after the
   change), as pass_records takes it in each; `noted(verdict, other's verdict)` hears of every record
   either decided as a new flow (None for one that passed it) unless the verdicts are `settled` by
   `known` (whatif's compared flows, its two dicts of first verdicts and its aliases), then the tally
   counts the record to its flow when it watches it. The walk stops before a record neither may take, or after one only this
   dataplane took: then it returns this one's part, (its verdict or None,), and Python decides the
   record for `other`. Returns (taken, position, last time, times backwards, that part or None). */
static PyObject *
FastPath_pass_pair(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 || !Py_IS_TYPE(args[6], &FastPathType) || args[6] == (PyObject *)self ||
            !(args[7] == Py_None || Py_IS_TYPE(args[7], &ShardFilterType)) || !Py_IS_TYPE(args[8], &TallyType) ||
            ((Tally *)args[8])->by_minute ||
            !PyCallable_Check(args[9]) || !PyTuple_Check(args[10]) || PyTuple_GET_SIZE(args[10]) != 4 ||
            !PySet_Check(PyTuple_GET_ITEM(args[10], 0)) || !PyDict_Check(PyTuple_GET_ITEM(args[10], 1)) ||
            !PyDict_Check(PyTuple_GET_ITEM(args[10], 2)) || !PyDict_Check(PyTuple_GET_ITEM(args[10], 3))) {
        PyErr_SetString(PyExc_TypeError, "pass_pair(buffer, pos, format, last, until, limit, other FastPath, shard "
                        "ShardFilter or None, tally Tally (not by minute), noted callable, known (set, dict, dict, dict))");
        return NULL;
    }
    PyObject *const *known = &PyTuple_GET_ITEM(args[10], 0);
    FastPath *other = (FastPath *)args[6];
    ShardFilter *shard = args[7] != Py_None ? (ShardFilter *)args[7] : NULL;
    Tally *tally = (Tally *)args[8];
    PyObject *noted = args[9];
    if (tally->slots == NULL) {
        PyErr_SetString(PyExc_ValueError, "the Tally was not initialised");
        return NULL;
    }
    if (!ready(self) || !ready(other))
        return NULL;
    Py_buffer view;
    Py_ssize_t pos, limit;
    Format f;
    double last, until;
    if (walk_arguments(args, &view, &pos, &f, &last, &until, &limit) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t end = view.len, passed = 0, backwards = 0;
    PyObject *half = NULL;  /* this dataplane's part of a record the other left to Python */
    int error = 0;
    while (passed < limit) {
        Py_ssize_t data, caplen;
        double ts;
        int iface;
        Py_ssize_t next = record_at(b, end, pos, &f, &ts, &data, &caplen, &iface);
        if (next < 0 || !(ts < until && ts < self->next_sweep && ts < other->next_sweep && f.ethernet[iface]))
            break;
        long which = shard != NULL ? frame_shard(shard, b + data, caplen) : 0;
        if (which < 0)
            break;
        if (shard == NULL || which == shard->index) {  /* another shard's record only moves the clocks */
            int took = take_pair(self, other, b + data, caplen, ts, tally, noted, known, &half);
            if (took <= 0) {
                error = took < 0;
                break;
            }
        }
        if (ts < last)
            backwards += 1;
        last = ts;
        passed += 1;
        pos = next;
    }
    PyBuffer_Release(&view);
    if (Tally_flush(tally) < 0 || error) {
        Py_XDECREF(half);
        return NULL;
    }
    return Py_BuildValue("(nndnN)", passed, pos, last, backwards, half != NULL ? half : Py_NewRef(Py_None));
}

/* read_frames(buffer, pos, format, last, until, limit, frame_type[, shard, places]): the records from pos on
   made into frame_type objects (replay.Frame) as replay.Capture's Python reader makes them, for a caller
   that decides each packet in Python (per-packet outputs): at most `limit` records, up to one at `until` or
   later or one the walk leaves to that reader (record_at). With `shard` (a ShardFilter) the records of other
   shards are skipped, moving the clock only, so no sweep may be passed (`next_sweep`) and a record the filter
   cannot key (not Ethernet IPv4, or ICMP) stops the read; each frame's offset among the records taken is
   appended to `places` (append_index). (taken, position, last time, times backwards, frames). */
static PyObject *
FastPath_read_frames(FastPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if ((nargs != 7 && nargs != 9) || !PyType_Check(args[6]) ||
            !PyType_IsSubtype((PyTypeObject *)args[6], &PyTuple_Type) ||
            (nargs == 9 && (!Py_IS_TYPE(args[7], &ShardFilterType) || !PyByteArray_Check(args[8])))) {
        PyErr_SetString(PyExc_TypeError, "read_frames(buffer, pos, format, last, until, limit, frame_type[, shard, "
                        "places]): frame_type a tuple type, shard a ShardFilter, places a bytearray");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[6];
    ShardFilter *shard = nargs == 9 ? (ShardFilter *)args[7] : NULL;
    PyObject *places = nargs == 9 ? args[8] : NULL;
    Py_buffer view;
    Py_ssize_t pos, limit;
    Format f;
    double last, until;
    if (walk_arguments(args, &view, &pos, &f, &last, &until, &limit) < 0)
        return NULL;
    PyObject *frames = PyList_New(0);
    const unsigned char *b = view.buf;
    Py_ssize_t end = view.len, taken = 0, backwards = 0;
    while (frames != NULL && taken < limit) {
        Py_ssize_t data, caplen;
        double ts;
        int iface;
        Py_ssize_t next = record_at(b, end, pos, &f, &ts, &data, &caplen, &iface);
        if (next < 0 || !(ts < until))
            break;
        long which = 0;
        if (shard != NULL) {
            which = f.ethernet[iface] && ts < self->next_sweep ? frame_shard(shard, b + data, caplen) : -1;
            if (which < 0)
                break;
        }
        if (shard == NULL || which == shard->index) {  /* another shard's record only moves the clock */
            if (places != NULL && append_index(places, taken) < 0)
                goto failed;
            uint32_t wirelen = u32_at(b + data - 4, f.big);  /* pcap's and pcapng's: just before the frame */
            PyObject *frame = type->tp_alloc(type, 4), *item;
            if (frame == NULL)
                goto failed;
            PyTuple_SET_ITEM(frame, 0, PyFloat_FromDouble(ts));
            PyTuple_SET_ITEM(frame, 1, PyLong_FromLong(f.linktype[iface]));
            PyTuple_SET_ITEM(frame, 2, PyBytes_FromStringAndSize((const char *)b + data, caplen));
            PyTuple_SET_ITEM(frame, 3, PyLong_FromUnsignedLong(wirelen));
            for (int i = 0; i < 4; i++)
                if ((item = PyTuple_GET_ITEM(frame, i)) == NULL) {
                    Py_DECREF(frame);
                    goto failed;
                }
            int appended = PyList_Append(frames, frame);
            Py_DECREF(frame);
            if (appended < 0)
                goto failed;
        }
        if (ts < last)
            backwards += 1;
        last = ts;
        taken += 1;
        pos = next;
    }
    PyBuffer_Release(&view);
    return frames == NULL ? NULL : Py_BuildValue("(nndnN)", taken, pos, last, backwards, frames);
failed:
    PyBuffer_Release(&view);
    Py_DECREF(frames);
    return NULL;
}

static PyMethodDef FastPath_methods[] = {
    {"process", (PyCFunction)(void (*)(void))FastPath_process, METH_FASTCALL,
     "process(frame, ts) -> the Verdict of a recent flow or of a new inbound flow, else the decoded Packet, "
     "else None"},
    {"pass_pair", (PyCFunction)(void (*)(void))FastPath_pass_pair, METH_FASTCALL,
     "whatif's walk through two dataplanes: (taken, position, last time, times backwards, this dataplane's "
     "part of a record the other left to Python, or None)"},
    {"pass_records", (PyCFunction)(void (*)(void))FastPath_pass_records, METH_FASTCALL,
     "pass the recent flows' records of a capture's buffer: (passed, position, last time, times backwards, "
     "verdicts of the new flows decided, or with hits_only (result, count) pairs of their policy results)"},
    {"decide_new_flows", (PyCFunction)(void (*)(void))FastPath_decide_new_flows, METH_FASTCALL,
     "decide_new_flows(chain_of, memo_of, between_of, first_states, active, platform): new flows from outside "
     "to a NIC or between two NICs are decided in C"},
    {"verdict_lines", (PyCFunction)FastPath_verdict_lines, METH_VARARGS,
     "verdict_lines(tail[, separated]): pass_records(..., lines, index) writes the verdict lines of the packets it "
     "takes, JSON or (separated) tab-separated"},
    {"expire_due", (PyCFunction)(void (*)(void))FastPath_expire_due, METH_FASTCALL,
     "expire_due(table, now) -> (closed, expired): end the table's flows due by now, when nothing hears of it"},
    {"read_frames", (PyCFunction)(void (*)(void))FastPath_read_frames, METH_FASTCALL,
     "read_frames(buffer, pos, format, last, until, limit, frame_type[, shard, places]) -> (taken, position, last "
     "time, times backwards, the frames made of the records taken: with a shard, of its own only)"},
    {"pass_frames", (PyCFunction)(void (*)(void))FastPath_pass_frames, METH_FASTCALL,
     "pass_frames(frames, until, limit[, tally]) -> (passed, last ts passed, the next frame for Dataplane.process, "
     "or None, or the exception the frames raised)"},
    {NULL},
};

static PyMemberDef FastPath_members[] = {
    {"next_sweep", T_DOUBLE, offsetof(FastPath, next_sweep), 0, NULL},
    {"new_flows", T_INT, offsetof(FastPath, new_flows), 0, NULL},
    {"packets", T_LONGLONG, offsetof(FastPath, packets), 0, NULL},
    {"allowed", T_LONGLONG, offsetof(FastPath, allowed), 0, NULL},
    {"denied", T_LONGLONG, offsetof(FastPath, denied), 0, NULL},
    {"created", T_LONGLONG, offsetof(FastPath, created), 0, NULL},
    {"walk_taken", T_PYSSIZET, offsetof(FastPath, walk_taken), READONLY, NULL},
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

/* -- merge_lines: the verdict lines of several workers in capture order ------------------------ */

typedef struct {
    Py_buffer text, indexes;
    int viewed;                      /* how many of the two views are held */
    const char *line, *end;          /* the next line, and the end of the text */
    const int64_t *index, *last;     /* its index, and the end of the indexes */
} WorkerLines;

typedef struct {
    const char *start;
    Py_ssize_t length;
} LineAt;

/* The length of the item at `at`: a line, up to its '\n', or a pcap record as append_frame writes it
   (little-endian, its captured length at byte 8); -1 when the buffer ends first. */
static Py_ssize_t
item_length(const char *at, const char *end, int records)
{
    if (!records) {
        const char *newline = memchr(at, '\n', end - at);
        return newline == NULL ? -1 : newline - at + 1;
    }
    if (end - at < 16)
        return -1;
    const unsigned char *u = (const unsigned char *)at + 8;
    Py_ssize_t length = 16 + (Py_ssize_t)((uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                                          (uint32_t)u[3] << 24);
    return length <= end - at ? length : -1;
}

/* merge_lines(texts, indexes, per_block[, records[, write]]): workers' verdict lines, each worker's in one
   buffer (lines ending in '\n') with the packet index of each line in another (native int64s, rising),
   merged in index order into bytes objects of `per_block` lines each: a list of them, or with `write`, each
   given to write(block, lines in it) as it is made (and None returned), for the client of a sharded replay
   to write. With `records`, pcap records (replay.NumberedRecords) instead of lines. */
static PyObject *
merge_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *write = nargs == 5 && args[4] != Py_None ? args[4] : NULL;
    if (nargs < 3 || nargs > 5 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
            PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1]) || (write != NULL && !PyCallable_Check(write))) {
        PyErr_SetString(PyExc_TypeError, "merge_lines(texts, indexes, per_block[, records[, write]]): two lists of "
                        "as many buffers, and something callable");
        return NULL;
    }
    int records = nargs >= 4 ? PyObject_IsTrue(args[3]) : 0;
    if (records < 0)
        return NULL;
    Py_ssize_t per_block = PyLong_AsSsize_t(args[2]);
    if (per_block == -1 && PyErr_Occurred())
        return NULL;
    if (per_block < 1) {
        PyErr_SetString(PyExc_ValueError, "per_block must be positive");
        return NULL;
    }
    Py_ssize_t k = PyList_GET_SIZE(args[0]), total = 0;
    WorkerLines *workers = PyMem_Calloc(k ? k : 1, sizeof(WorkerLines));
    LineAt *lines = NULL;  /* a block's lines, in order */
    PyObject *out = NULL, *block = NULL;
    int ok = 0;
    if (workers == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        WorkerLines *w = &workers[i];
        if (PyObject_GetBuffer(PyList_GET_ITEM(args[0], i), &w->text, PyBUF_SIMPLE) < 0)
            goto done;
        w->viewed = 1;
        if (PyObject_GetBuffer(PyList_GET_ITEM(args[1], i), &w->indexes, PyBUF_SIMPLE) < 0)
            goto done;
        w->viewed = 2;
        if (w->indexes.len % 8 || ((uintptr_t)w->indexes.buf) % _Alignof(int64_t)) {
            PyErr_SetString(PyExc_ValueError, "merge_lines: indexes must be aligned int64s");
            goto done;
        }
        Py_ssize_t count = w->indexes.len / 8, items = 0, length;
        w->line = w->text.buf;
        w->end = w->line + w->text.len;
        const char *q = w->line;
        for (; q < w->end && (length = item_length(q, w->end, records)) > 0; q += length)
            items += 1;
        if (items != count || q != w->end) {
            PyErr_Format(PyExc_ValueError, "merge_lines: worker %zd gave %zd whole %s for %zd indexes", i, items,
                         records ? "records" : "lines", count);
            goto done;
        }
        w->index = w->indexes.buf;
        w->last = w->index + count;
        total += count;
    }
    if (per_block > total)
        per_block = total ? total : 1;
    lines = PyMem_Malloc(per_block * sizeof(LineAt));
    out = lines == NULL ? PyErr_NoMemory() : write != NULL ? Py_NewRef(Py_None) : PyList_New(0);
    if (out == NULL)
        goto done;
    for (Py_ssize_t first = 0; first < total; first += per_block) {
        Py_ssize_t count = total - first < per_block ? total - first : per_block, size = 0;
        for (Py_ssize_t line = 0; line < count; line++) {  /* the block's lines in order, and its size */
            WorkerLines *next = NULL;
            for (Py_ssize_t i = 0; i < k; i++)
                if (workers[i].index < workers[i].last && (next == NULL || *workers[i].index < *next->index))
                    next = &workers[i];
            lines[line].start = next->line;
            lines[line].length = item_length(next->line, next->end, records);
            size += lines[line].length;
            next->line += lines[line].length;
            next->index += 1;
        }
        block = PyBytes_FromStringAndSize(NULL, size);
        if (block == NULL)
            goto done;
        char *to = PyBytes_AS_STRING(block);
        for (Py_ssize_t line = 0; line < count; line++) {
            memcpy(to, lines[line].start, lines[line].length);
            to += lines[line].length;
        }
        int failed;
        if (write != NULL) {  /* written at once: the block is freed before the next is made, and its memory reused */
            PyObject *items = PyLong_FromSsize_t(count), *called = items != NULL ?
                PyObject_CallFunctionObjArgs(write, block, items, NULL) : NULL;
            failed = called == NULL;
            Py_XDECREF(called);
            Py_XDECREF(items);
        } else
            failed = PyList_Append(out, block);
        Py_CLEAR(block);
        if (failed)
            goto done;
    }
    ok = 1;
done:
    for (Py_ssize_t i = 0; workers != NULL && i < k; i++) {
        if (workers[i].viewed >= 1)
            PyBuffer_Release(&workers[i].text);
        if (workers[i].viewed == 2)
            PyBuffer_Release(&workers[i].indexes);
    }
    PyMem_Free(workers);
    PyMem_Free(lines);
    Py_XDECREF(block);
    if (!ok)
        Py_CLEAR(out);
    return out;
}

static PyMethodDef module_methods[] = {
    {"merge_lines", (PyCFunction)(void (*)(void))merge_lines, METH_FASTCALL,
     "merge_lines(texts, indexes, per_block[, records[, write]]): workers' verdict lines (or pcap records) merged "
     "in index order, per_block a bytes object: a list of them, or each given to write(block, count)"},
    {NULL}
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, module_methods};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    RecordType.tp_vectorcall = Record_vectorcall;
    if (PyType_Ready(&RecordType) < 0 || PyType_Ready(&RecentTableType) < 0 || PyType_Ready(&ShardFilterType) < 0 ||
            PyType_Ready(&TallyType) < 0 || PyType_Ready(&RulesType) < 0 || PyType_Ready(&FastPathType) < 0)
        return NULL;
    s_value = PyUnicode_InternFromString("_value_");
    s_reschedule = PyUnicode_InternFromString("reschedule");
    s_wheel = PyUnicode_InternFromString("wheel");
    s_due = PyUnicode_InternFromString("due");
    s_version = PyUnicode_InternFromString("version");
    s_max_flows = PyUnicode_InternFromString("max_flows");
    s_by_key = PyUnicode_InternFromString("by_key");
    s_json_line = PyUnicode_InternFromString("json_line");
    s_tsv_line = PyUnicode_InternFromString("tsv_line");
    s_groups = PyUnicode_InternFromString("network_security_groups");
    PyObject *heapq = PyImport_ImportModule("_heapq");
    heappush = heapq != NULL ? PyObject_GetAttrString(heapq, "heappush") : NULL;
    heappop = heapq != NULL ? PyObject_GetAttrString(heapq, "heappop") : NULL;
    Py_XDECREF(heapq);
    if (s_wheel == NULL || s_due == NULL || s_version == NULL || s_max_flows == NULL || s_by_key == NULL ||
            s_json_line == NULL || s_tsv_line == NULL || s_groups == NULL || heappush == NULL || heappop == NULL)
        return NULL;
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
            PyModule_AddObjectRef(m, "RecentTable", (PyObject *)&RecentTableType) < 0 ||
            PyModule_AddObjectRef(m, "ShardFilter", (PyObject *)&ShardFilterType) < 0 ||
            PyModule_AddObjectRef(m, "Tally", (PyObject *)&TallyType) < 0 ||
            PyModule_AddObjectRef(m, "Rules", (PyObject *)&RulesType) < 0 ||
            PyModule_AddObjectRef(m, "FastPath", (PyObject *)&FastPathType) < 0 ||
            PyModule_AddIntConstant(m, "STOP_BEFORE", STOP_BEFORE) < 0 ||
            PyModule_AddIntConstant(m, "STOP_AFTER_DENY", STOP_AFTER_DENY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
