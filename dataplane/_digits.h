/* The decimal digits of an unsigned number written at `out`, and where they end: both C modules write
   numbers into text (verdict lines, flow-log tuples) without snprintf's format parsing. */
#ifndef DATAPLANE_DIGITS_H
#define DATAPLANE_DIGITS_H

static char *
put_number(char *out, unsigned long long v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *out++ = digits[--n];
    return out;
}

#endif
