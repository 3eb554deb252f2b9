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
