/* The least a stateful firewall must do per packet, as a speed limit for replay to be measured
 * against: map the capture, parse Ethernet / IPv4 / TCP or UDP, look the direction-independent
 * 5-tuple up in an open-addressing hash table, create an entry on a miss, count the packet.
 *
 *     cc -O2 -o limit limit.c && ./limit capture.pcap
 *
 * Prints "packets flows" on stdout. Classic pcap (microsecond or nanosecond, either byte order)
 * only: the bench writes its captures that way.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    uint32_t lo_ip, hi_ip;
    uint16_t lo_port, hi_port;
    uint8_t proto, used;
    uint64_t packets;
} Entry;

static uint32_t read32(const uint8_t *p, int swap) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: limit CAPTURE.pcap\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 24) {
        fprintf(stderr, "%s: cannot read a pcap\n", argv[1]);
        return 2;
    }
    const uint8_t *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
        fprintf(stderr, "%s: cannot map\n", argv[1]);
        return 2;
    }
    uint32_t magic;
    memcpy(&magic, data, 4);
    int swap = magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1;
    if (!swap && magic != 0xa1b2c3d4 && magic != 0xa1b23c4d) {
        fprintf(stderr, "%s: not a classic pcap\n", argv[1]);
        return 2;
    }
    size_t capacity = 1 << 22, mask = capacity - 1, flows = 0;
    Entry *table = calloc(capacity, sizeof(Entry));
    if (table == NULL)
        return 2;
    uint64_t packets = 0;
    size_t off = 24, size = (size_t)st.st_size;
    while (off + 16 <= size) {
        uint32_t caplen = read32(data + off + 8, swap);
        const uint8_t *f = data + off + 16;
        off += 16 + (size_t)caplen;
        if (off > size)
            break;
        packets++;
        if (caplen < 38 || f[12] != 0x08 || f[13] != 0x00 || (f[14] >> 4) != 4)
            continue;
        size_t ihl = (size_t)(f[14] & 0x0f) * 4;
        uint8_t proto = f[23];
        if ((proto != 6 && proto != 17) || caplen < 14 + ihl + 4)
            continue;
        uint32_t src, dst;
        memcpy(&src, f + 26, 4);
        memcpy(&dst, f + 30, 4);
        uint16_t sport = (uint16_t)(f[14 + ihl] << 8 | f[15 + ihl]);
        uint16_t dport = (uint16_t)(f[16 + ihl] << 8 | f[17 + ihl]);
        int forward = src < dst || (src == dst && sport <= dport);
        Entry key = {forward ? src : dst, forward ? dst : src, forward ? sport : dport, forward ? dport : sport,
                     proto, 1, 0};
        uint64_t h = ((uint64_t)key.lo_ip * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)key.hi_ip * 0xC2B2AE3D27D4EB4Full)
                     ^ ((uint64_t)key.lo_port << 24) ^ ((uint64_t)key.hi_port << 8) ^ proto;
        h ^= h >> 29;
        for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
            Entry *e = &table[i];
            if (!e->used) {
                if (flows >= capacity / 2)
                    break;
                *e = key;
                e->packets = 1;
                flows++;
                break;
            }
            if (e->lo_ip == key.lo_ip && e->hi_ip == key.hi_ip && e->lo_port == key.lo_port &&
                e->hi_port == key.hi_port && e->proto == proto) {
                e->packets++;
                break;
            }
        }
    }
    printf("%llu %zu\n", (unsigned long long)packets, flows);
    return 0;
}
