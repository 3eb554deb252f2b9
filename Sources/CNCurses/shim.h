/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef KVMSTAT_CNCURSES_SHIM_H
#define KVMSTAT_CNCURSES_SHIM_H

/* The system's wide-character ncurses. Swift cannot import its function-like macros
 * (A_BOLD and friends) or use the mutable global stdscr safely, so these inline accessors
 * hand them over as plain values. */
#define NCURSES_WIDECHAR 1
#include <ncursesw/curses.h>

static inline int kvmstat_attr_bold(void) { return (int)A_BOLD; }
static inline int kvmstat_attr_standout(void) { return (int)A_STANDOUT; }
static inline int kvmstat_attr_underline(void) { return (int)A_UNDERLINE; }
static inline int kvmstat_attr_blink(void) { return (int)A_BLINK; }
static inline int kvmstat_err(void) { return ERR; }

/* initscr() prints its own message and exits when the terminal type is unknown; newterm()
 * returns NULL instead, so kvmstat can say so in its own words and exit promptly. */
static inline WINDOW *kvmstat_start_screen(void) {
    FILE *out = fdopen(1, "w");
    FILE *in = fdopen(0, "r");
    if (out == NULL || in == NULL) return NULL;
    SCREEN *screen = newterm(NULL, out, in);
    if (screen == NULL) return NULL;
    set_term(screen);
    return stdscr;
}

#endif
