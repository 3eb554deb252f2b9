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
