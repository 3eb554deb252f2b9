/// Text as a terminal lays it out: in columns, not characters. A guest name of wide
/// characters (`虚拟机`) takes twice its length; combining marks and format characters take
/// none. Truncating and padding by columns keeps the headline off the regex line and the
/// guest list inside its column.
enum TerminalText {
    /// Columns one scalar takes: 0 for combining marks and format characters, 2 for East
    /// Asian wide and fullwidth characters and emoji, 1 otherwise (wcwidth(3)'s rules,
    /// without depending on the locale's tables).
    static func columns(_ scalar: Unicode.Scalar) -> Int {
        let value = scalar.value
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .format: return 0
        default: break
        }
        if value == 0x200B || (0x1160...0x11FF).contains(value) { return 0 }
        if scalar.properties.isEmojiPresentation { return 2 }
        for range in wide where range.contains(value) { return 2 }
        return 1
    }

    /// East Asian Wide (W) and Fullwidth (F) blocks.
    private static let wide: [ClosedRange<UInt32>] = [
        0x1100...0x115F, 0x2329...0x232A, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF,
        0x4E00...0x9FFF, 0xA000...0xA4CF, 0xA960...0xA97F, 0xAC00...0xD7A3, 0xF900...0xFAFF,
        0xFE10...0xFE19, 0xFE30...0xFE6F, 0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x1F300...0x1F64F,
        0x1F900...0x1F9FF, 0x20000...0x2FFFD, 0x30000...0x3FFFD, 0x16FE0...0x16FE4,
        0x17000...0x18AFF, 0x1B000...0x1B2FF,
    ]

    static func width(_ text: String) -> Int {
        text.unicodeScalars.reduce(0) { $0 + columns($1) }
    }

    /// The longest start of `text` that fits in `limit` columns (whole characters only).
    static func prefix(_ text: String, columns limit: Int) -> String {
        var used = 0
        var end = text.startIndex
        for character in text {
            let needed = character.unicodeScalars.reduce(0) { $0 + columns($1) }
            if used + needed > limit { break }
            used += needed
            end = text.index(after: end)
        }
        return String(text[..<end])
    }

    /// `%-Ns` in columns: padded to `limit` columns, never cut.
    static func padded(_ text: String, to limit: Int) -> String {
        let used = width(text)
        return used >= limit ? text : text + String(repeating: " ", count: limit - used)
    }
}
