/* libpng's error and warning handlers for io/image_png.c (reading) and
 * io/image_write_png.c (writing): the error pointer given to png_create_*_struct is a
 * char[IMAGE_PNG_MSG] that keeps libpng's first message for our rb_error; warnings are never
 * printed. */
#ifndef IMAGE_PNG_MSG_H
#define IMAGE_PNG_MSG_H

#include <png.h>

#define IMAGE_PNG_MSG 256

void image_png_error(png_structp png, png_const_charp msg);
void image_png_warning(png_structp png, png_const_charp msg);

#endif
