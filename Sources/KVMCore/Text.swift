extension StringProtocol {
    /// Without leading and trailing blanks (space, tab, newline), as kernel files and typed
    /// values come.
    public func trimmingBlanks() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\n" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    /// printf's `%-Ns`: left-justified in `width` columns, never cut.
    public func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    /// printf's `%Ns`: right-justified in `width` columns, never cut.
    public func rightAligned(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

extension Int {
    /// printf's `%0Nd` for non-negative values.
    public func zeroPadded(to width: Int) -> String {
        let digits = String(self)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

extension String {
    /// Control characters (C0, DEL, C1) as `\xNN`, and format characters (bidirectional
    /// overrides such as U+202E, zero-width ones) and line or paragraph separators as
    /// `\uNNNN`, as Python's repr writes them: a name another user chose cannot send escape
    /// sequences to a terminal, break a line of a text log, nor turn it around. Other names
    /// are returned as they are.
    public var escapedForDisplay: String {
        guard unicodeScalars.contains(where: { Self.isControl($0) || Self.isFormat($0) }) else { return self }
        var out = ""
        for scalar in unicodeScalars {
            let hex = String(scalar.value, radix: 16)
            if Self.isControl(scalar) {
                out += "\\x" + String(repeating: "0", count: Swift.max(0, 2 - hex.count)) + hex
            } else if Self.isFormat(scalar) {
                out += scalar.value > 0xFFFF
                    ? "\\U" + String(repeating: "0", count: 8 - hex.count) + hex
                    : "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
    }

    /// Unicode's format characters (Cf: bidi controls, zero-width joiners, BOM), and the
    /// line and paragraph separators.
    private static func isFormat(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .format, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }
}
