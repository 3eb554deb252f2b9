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

    /// Waits for any key.
    func anyKey() {
        wtimeout(window, -1)
        _ = wgetch(window)
    }

    /// Reads a line typed at (line, column), echoed, with the cursor shown.
    func readLine(_ line: Int, _ column: Int) -> String {
        wtimeout(window, -1)
        echo()
        curs_set(1)
        wmove(window, Int32(line), Int32(column))
        var buffer = [CChar](repeating: 0, count: 256)
        _ = wgetnstr(window, &buffer, 255)
        noecho()
        curs_set(0)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Raw mode hands over control characters (e.g. a stray Ctrl-C): drop them.
        return String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }.map(Character.init))
    }
}
