/// Python `re` syntax, rewritten into Swift Regex syntax so a saved `-f` filter means in
/// kvmstat what it meant in kvm_stat. Where the two differ:
/// - flags `(?a)`, `(?u)` (ASCII/Unicode classes; field names are ASCII either way) are
///   dropped, `(?i)`, `(?m)`, `(?s)`, `(?x)` kept; `(?L)` and `(?au)` are errors, as in Python;
/// - inside a set, `[`, `&`, `~` and `--` are literal characters, as in Python (Swift would
///   read `[[:alpha:]]` as a POSIX class, `&&` as an intersection);
/// - `\Z` is the absolute end, `\v` the vertical tab, `\a` the bell, `\b` inside a set the
///   backspace, `\uXXXX`/`\UXXXXXXXX`/octal escapes code points;
/// - `(?P<name>…)` and `(?P=name)` become Swift's named groups and back-references;
///   `(?#…)` comments are dropped; `{` that does not start a quantifier is a literal;
/// - escapes Python refuses (`\p`, `\z`, `\h`, `\Q`, …) are refused.
/// - `$` also matches before a final newline, as in Python.
/// Not honoured, and refused with a clear message: conditional groups `(?(1)…|…)` and
/// lookbehind assertions `(?<=…)`, `(?<!…)` (Swift's Regex has neither).
public enum PythonRegex {
    public struct Unsupported: Error, Sendable, CustomStringConvertible {
        public let description: String
        /// Python would take it (kvmstat cannot honour it), as opposed to a pattern Python
        /// refuses too.
        public var validInPython = false
    }

    /// The Swift spelling of Python pattern `pattern`.
    public static func translate(_ pattern: String) throws(Unsupported) -> String {
        var reader = Reader(Array(pattern.unicodeScalars))
        var out = ""
        while let c = reader.next() {
            switch c {
            case "\\": out += try escape(&reader, inSet: false)
            case "[": out += try characterSet(&reader)
            case "(": out += try group(&reader)
            case "{": out += quantifierOrLiteral(&reader)
            case "}": out += "\\}"
            // Python's `$` also matches before a final newline; Swift's only at the end.
            case "$": out += "(?:$|(?=\\n\\z))"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    struct Reader {
        let scalars: [Unicode.Scalar]
        var index = 0
        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }
        mutating func next() -> Unicode.Scalar? {
            guard index < scalars.count else { return nil }
            defer { index += 1 }
            return scalars[index]
        }
        func peek(_ offset: Int = 0) -> Unicode.Scalar? {
            index + offset < scalars.count ? scalars[index + offset] : nil
        }
        mutating func take(_ text: String) -> Bool {
            let wanted = Array(text.unicodeScalars)
            guard index + wanted.count <= scalars.count,
                  Array(scalars[index..<(index + wanted.count)]) == wanted else { return false }
            index += wanted.count
            return true
        }
    }

    private static func isHex(_ c: Unicode.Scalar?) -> Bool {
        guard let c else { return false }
        return ("0"..."9").contains(c) || ("a"..."f").contains(c) || ("A"..."F").contains(c)
    }

    private static func codePoint(_ value: UInt32) -> String {
        "\\x{" + String(value, radix: 16) + "}"
    }

    /// After a backslash.
    private static func escape(_ reader: inout Reader, inSet: Bool) throws(Unsupported) -> String {
        guard let c = reader.next() else { throw Unsupported(description: "bad escape (end of pattern)") }
        switch c {
        case "d", "D", "s", "S", "w", "W", "n", "r", "t", "f": return "\\" + String(c)
        case "b": return inSet ? codePoint(8) : "\\b"
        case "B", "A": guard !inSet else { break }; return "\\" + String(c)
        case "Z": guard !inSet else { break }; return "\\z"
        case "a": return codePoint(7)
        case "v": return codePoint(0x0B)
        case "x", "u", "U":
            let digits = c == "x" ? 2 : c == "u" ? 4 : 8
            var hex = ""
            for _ in 0..<digits {
                guard isHex(reader.peek()) else { throw Unsupported(description: "incomplete escape \\\(c)") }
                hex.unicodeScalars.append(reader.next()!)
            }
            return codePoint(UInt32(hex, radix: 16)!)
        case "N":
            guard reader.peek() == "{" else { break }
            var name = ""
            while let n = reader.next(), n != "}" { name.unicodeScalars.append(n) }
            return "\\N" + name + "}"
        case "0"..."9":
            // Octal (\0, \012, three digits) or a group reference (\1 … \99).
            var digits = String(c)
            if c == "0" || (("0"..."7").contains(c) && reader.peek().map { ("0"..."7").contains($0) } == true
                            && reader.peek(1).map { ("0"..."7").contains($0) } == true) {
                while digits.count < 3, let d = reader.peek(), ("0"..."7").contains(d) {
                    digits.unicodeScalars.append(reader.next()!)
                }
                return codePoint(UInt32(digits, radix: 8)!)
            }
            guard !inSet else { throw Unsupported(description: "bad escape \\\(c) in a set") }
            if let d = reader.peek(), ("0"..."9").contains(d) { digits.unicodeScalars.append(reader.next()!) }
            return "\\" + digits
        default:
            let ascii = c.isASCII && (("a"..."z").contains(c) || ("A"..."Z").contains(c))
            if !ascii { return "\\" + String(c) }
        }
        throw Unsupported(description: "bad escape \\\(c)")
    }

    /// After `[`: Python's set, every character literal but `\`, ranges and the closing `]`
    /// (which is literal right after `[` or `[^`).
    private static func characterSet(_ reader: inout Reader) throws(Unsupported) -> String {
        var out = "["
        if reader.peek() == "^" { out += "^"; _ = reader.next() }
        var first = true
        while true {
            guard let c = reader.next() else { throw Unsupported(description: "unterminated character set") }
            if c == "]" && !first { return out + "]" }
            first = false
            switch c {
            case "\\": out += try escape(&reader, inSet: true)
            case "[", "]", "&", "~", "{", "}": out += "\\" + String(c)
            case "-":
                // A range between two characters, else a literal hyphen.
                let ranged = out.count > 1 && !out.hasSuffix("[") && !out.hasSuffix("^")
                    && !out.hasSuffix("\\-") && reader.peek() != "]" && reader.peek() != nil
                    && reader.peek() != "-"
                out += ranged ? "-" : "\\-"
            default: out.unicodeScalars.append(c)
            }
        }
    }

    /// After `(`.
    private static func group(_ reader: inout Reader) throws(Unsupported) -> String {
        guard reader.peek() == "?" else { return "(" }
        _ = reader.next()
        if reader.take("P<") { return "(?<" }
        if reader.take("P=") {
            var name = ""
            while let n = reader.next(), n != ")" { name.unicodeScalars.append(n) }
            return "\\k<" + name + ">"
        }
        if reader.take("#") {
            while let n = reader.next(), n != ")" {}
            return ""
        }
        if reader.peek() == "(" {
            throw Unsupported(description: "conditional groups (?(…)…|…)", validInPython: true)
        }
        if reader.peek() == "<" {
            guard reader.peek(1) == "=" || reader.peek(1) == "!" else {
                throw Unsupported(description: "unknown extension ?<")
            }
            throw Unsupported(description: "lookbehind assertions (?<=…), (?<!…)", validInPython: true)
        }
        // Flags: (?aiLmsux) or (?aiLmsux-imsx:…).
        var flags = ""
        var seen = Set<Unicode.Scalar>()
        while let f = reader.peek(), "aiLmsux-".unicodeScalars.contains(f) {
            _ = reader.next()
            seen.insert(f)
            if f == "L" { throw Unsupported(description: "the LOCALE flag (?L) needs a bytes pattern") }
            if f != "a" && f != "u" { flags.unicodeScalars.append(f) }
        }
        if seen.contains("a") && seen.contains("u") {
            throw Unsupported(description: "the ASCII and UNICODE flags are incompatible")
        }
        guard !seen.isEmpty else { return "(?" }
        if reader.peek() == ")" {
            _ = reader.next()
            return flags.isEmpty ? "" : "(?" + flags + ")"
        }
        if reader.peek() == ":" {
            _ = reader.next()
            return flags.isEmpty || flags == "-" ? "(?:" : "(?" + flags + ":"
        }
        throw Unsupported(description: "unknown flag in a (?…) group")
    }

    /// After `{`: a quantifier `{m}`, `{m,}`, `{,n}`, `{m,n}` (with `?`/`+` after it as
    /// usual), or a literal brace.
    private static func quantifierOrLiteral(_ reader: inout Reader) -> String {
        var i = 0
        var body = ""
        while let c = reader.peek(i), ("0"..."9").contains(c) || c == "," {
            body.unicodeScalars.append(c)
            i += 1
        }
        let parts = body.split(separator: ",", omittingEmptySubsequences: false)
        guard reader.peek(i) == "}", !body.isEmpty, parts.count <= 2, body != ",",
              !(parts.count == 1 && parts[0].isEmpty)
        else { return "\\{" }
        reader.index += i + 1
        if parts.count == 2 && parts[0].isEmpty { return "{0," + parts[1] + "}" }
        return "{" + body + "}"
    }
}
