/* Writing 8-bit gray or RGB pixels as PNG (inspect --export-image): libpng, to a temporary
 * name next to the target, renamed into place only when complete. */
#include "image.h"
#include "image_png_msg.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int image_write_png(const char *path, const uint8_t *pixels, int height, int width, int channels,
                    rb_error *err)
{
    if (!path || !pixels || height <= 0 || width <= 0 || (channels != 1 && channels != 3))
        return rb_fail(err, NULL, "%s: cannot write a %dx%dx%d image as PNG",
                       path ? path : "(null)", height, width, channels);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return rb_fail(err, NULL, "%s: path too long", path);
    FILE *volatile f = fopen(tmp, "wb");
    if (!f)
        return rb_fail(err, "check that the folder exists and is writable",
                       "%s: cannot create (%s)", tmp, strerror(errno));
    char msg[IMAGE_PNG_MSG] = "";
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, image_png_error, image_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        unlink(tmp);
        return rb_fail(err, NULL, "%s: out of memory (libpng)", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        unlink(tmp);
        return rb_fail(err, NULL, "%s: cannot write PNG (%s)", path, msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    int bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        unlink(tmp);
        return rb_fail(err, "check free disk space", "%s: write failed (%s)", tmp,
                       strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rb_fail(err, NULL, "%s: cannot rename %s into place (%s)", path, tmp, strerror(e));
    }
    return 0;
}
