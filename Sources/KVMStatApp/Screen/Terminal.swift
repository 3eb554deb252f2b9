#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CNCurses
import KVMCore

/// The few ncurses calls the screen makes. Raw mode, so Ctrl-C arrives as a key (3) that
/// quits cleanly instead of a signal in the middle of a draw.
final class Terminal {
    let window: UnsafeMutablePointer<WINDOW>

    static let bold = Int32(kvmstat_attr_bold())
    static let standout = Int32(kvmstat_attr_standout())
    static let underline = Int32(kvmstat_attr_underline())
    static let blink = Int32(kvmstat_attr_blink())
    static let controlC: Int32 = 3

    private var active = true

    init?() {
        setlocale(LC_ALL, "")
        guard let window = kvmstat_start_screen() else { return nil }
        self.window = window
        raw()
        noecho()
        keypad(window, true)
        _ = start_color()
        curs_set(0)
        use_default_colors()
    }

    /// Puts the terminal back without ncurses, from another thread while the main thread may
    /// be blocked in ncurses on a stalled terminal: the saved modes are restored and the
    /// alternate screen left through a non-blocking descriptor of its own (a write that would
    /// block is dropped, never waited on).
    static func emergencyRestorer() -> (@Sendable () -> Void)? {
        var saved = termios()
        guard tcgetattr(STDOUT_FILENO, &saved) == 0 else { return nil }
        let modes = saved
        return {
            var modes = modes
            _ = tcsetattr(STDOUT_FILENO, TCSANOW, &modes)
            let fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else { return }
            let reset = "\u{1b}[?1049l\u{1b}[?25h\r\n"
            _ = reset.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
    }

    /// Restores the terminal as it was (once; later calls do nothing).
    func end() {
        guard active else { return }
        active = false
        keypad(window, false)
        echo()
        noraw()
        endwin()
    }

    var height: Int { Int(getmaxy(window)) }
    var width: Int { Int(getmaxx(window)) }

    func erase() { werase(window) }

    /// Shows what was drawn since the last refresh, in one update.
    func refresh() { wrefresh(window) }

    func clear(fromLine line: Int) {
        wmove(window, Int32(line), 0)
        wclrtobot(window)
    }

    /// Draws `text` at (line, column), cut at the screen's edge by display width (ncurses
    /// would wrap it onto the next line).
    func put(_ line: Int, _ column: Int, _ text: String, _ attributes: Int32 = 0) {
        guard line >= 0, line < height, column >= 0, column < width else { return }
        let room = width - column
        let shown = TerminalText.width(text) > room ? TerminalText.prefix(text, columns: room) : text
        if attributes != 0 { wattron(window, attributes) }
        mvwaddstr(window, Int32(line), Int32(column), shown)
        if attributes != 0 { wattroff(window, attributes) }
    }

    enum Input: Equatable {
        case key(Int32)
        case signal(Int32)
        /// The terminal is gone (end of input, hang-up).
        case hangup
    }

    /// Waits up to `seconds` for a key or a signal (whichever comes first); nil when neither
    /// came. Keys ncurses has already read come first.
    func key(within seconds: Double) -> Input? {
        wtimeout(window, 0)
        let pending = wgetch(window)
        if pending != kvmstat_err() { return .key(pending) }
        switch Signals.wait(seconds: seconds, orInput: STDIN_FILENO) {
        case .signal(let signal): return .signal(signal)
        case .timeout: return nil
        case .hangup: return .hangup
        case .input:
            let key = wgetch(window)
            return key == kvmstat_err() ? nil : .key(key)
        }
    }

    /// Waits for any key; false when it was Ctrl-C (which quits, as everywhere on the screen).
    func anyKey() -> Bool {
        wtimeout(window, -1)
        return wgetch(window) != Self.controlC
    }

    /// Reads a line typed at (line, column), echoed, with the cursor shown; nil when Ctrl-C
    /// was typed (which quits, as everywhere on the screen). Enter ends the line, Backspace
    /// takes back a character; other control characters (Esc, Tab) and function keys are
    /// dropped. At most 255 bytes, as upstream's curses getstr.
    func readLine(_ line: Int, _ column: Int) -> String? {
        wtimeout(window, -1)
        curs_set(1)
        defer { curs_set(0) }
        var bytes: [UInt8] = []
        while true {
            wmove(window, Int32(line), Int32(column))
            wclrtoeol(window)
            put(line, column, Self.shown(bytes))
            wrefresh(window)
            let key = wgetch(window)
            switch key {
            case Self.controlC: return nil
            case 10, 13, KEY_ENTER: return Self.shown(bytes)
            // The terminal is gone: nothing more will be typed.
            case kvmstat_err(): return Self.shown(bytes)
            case 8, 127, KEY_BACKSPACE:
                // One character back: its continuation bytes, then its first.
                while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
                if !bytes.isEmpty { bytes.removeLast() }
            case 32...255 where bytes.count < 255: bytes.append(UInt8(key))
            default: continue
            }
        }
    }

    /// Typed bytes as text, without control characters (C1 ones typed as UTF-8 included).
    private static func shown(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        return String(String.UnicodeScalarView(text.unicodeScalars.filter {
            $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value)
        }))
    }
}
