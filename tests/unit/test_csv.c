/* CSV: the one field splitter (csv_split_line, io/csv.c) on the records infer writes with
 * csvrow_field and reads back with csvrec_read: quoted commas, doubled quotes, newlines
 * inside a field, empty fields, CRLF ends, and at most maxf fields. */
#include "csv.h"
#include "infer_work.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_plain(void)
{
    char line[] = "a,,\"b,c\",\"say \"\"hi\"\"\",d\r\n";
    char *f[8];
    int n = csv_split_line(line, f, 8);
    CHECK(n == 5, "%d fields", n);
    if (n != 5)
        return;
    CHECK(!strcmp(f[0], "a"), "f0 '%s'", f[0]);
    CHECK(!strcmp(f[1], ""), "f1 '%s'", f[1]);
    CHECK(!strcmp(f[2], "b,c"), "f2 '%s'", f[2]);
    CHECK(!strcmp(f[3], "say \"hi\""), "f3 '%s'", f[3]);
    CHECK(!strcmp(f[4], "d"), "f4 '%s' (CRLF stripped)", f[4]);

    char few[] = "x,y,z,w\n";
    n = csv_split_line(few, f, 2);
    CHECK(n == 2 && !strcmp(f[0], "x") && !strncmp(f[1], "y", 1), "maxf 2: %d fields", n);
}

/* Rows written as infer writes its work files, read back record by record. */
static void check_round_trip(void)
{
    const char *rows[][3] = {
        {"plain/a.png", "12", "ok"},
        {"odd, name/b\"q\".jpg", "", "line one\nline two"},
        {"c.tif", "7", "ends with comma,"},
    };
    rb_buf text = {0};
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 3; c++)
            csvrow_field(&text, rows[r][c], c == 0);
        rb_buf_put(&text, "\n", 1);
    }
    CHECK(!text.failed, "row buffer");
    FILE *f = fmemopen(text.data, text.len, "r");
    CHECK(f != NULL, "fmemopen");
    if (!f) {
        rb_buf_free(&text);
        return;
    }
    rb_buf rec = {0};
    int r = 0;
    while (csvrec_read(f, &rec) == 1) {
        char *fld[4];
        int n = csv_split_line((char *)rec.data, fld, 4);
        CHECK(r < 3, "more records than rows");
        if (r >= 3)
            break;
        CHECK(n == 3, "row %d: %d fields", r, n);
        for (int c = 0; c < 3 && c < n; c++)
            CHECK(!strcmp(fld[c], rows[r][c]), "row %d field %d: '%s' != '%s'", r, c, fld[c], rows[r][c]);
        r++;
    }
    CHECK(r == 3, "%d records read back", r);
    fclose(f);
    rb_buf_free(&rec);
    rb_buf_free(&text);
}

int main(void)
{
    check_plain();
    check_round_trip();
    return TEST_DONE();
}
