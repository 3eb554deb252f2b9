/// Reading JSON where it lies, without building a tree: a cursor over UTF-8 bytes that checks
/// the text as strictly as `JSONValue.parse` (RFC 8259, the same depth and member limits) and
/// hands out what a caller looks at — a string's bytes, an unsigned integer, a literal — while
/// skipping the rest. Made for QEMU's statistics answers: hundreds of values a guest every
/// sample, where a tree of `JSONValue`s (a String per name, an array per object) cost more
/// than everything else kvmstat does with them.
///
/// Used inside `withUnsafeBufferPointer` of the bytes it reads; errors are `JSONValue.ParseError`
/// so that a peer's bad answer reads the same whichever reader found it.
public struct JSONScanner {
    public let bytes: UnsafeBufferPointer<UInt8>
    public private(set) var index: Int

    public init(_ bytes: UnsafeBufferPointer<UInt8>, from index: Int = 0) {
        self.bytes = bytes
        self.index = index
    }

    public typealias ParseError = JSONValue.ParseError

    public func error(_ reason: String) -> ParseError { ParseError(offset: index, reason: reason) }

    public mutating func skipBlanks() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// The next byte after blanks, not consumed; nil at the end.
    public mutating func peek() -> UInt8? {
        skipBlanks()
        return index < bytes.count ? bytes[index] : nil
    }

    /// Whether all was read but blanks.
    public mutating func atEnd() -> Bool { peek() == nil }

    /// A string's content, between its quotes (escapes left as they are), and whether it has
    /// escapes; the text is checked (escapes well formed, no control characters).
    public mutating func string() throws(ParseError) -> (bytes: Range<Int>, escaped: Bool) {
        guard peek() == UInt8(ascii: "\"") else { throw error("expected a string") }
        index += 1
        let start = index
        var escaped = false
        while true {
            guard index < bytes.count else { throw error("unterminated string") }
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""): return (start..<(index - 1), escaped)
            case UInt8(ascii: "\\"):
                escaped = true
                guard index < bytes.count else { throw error("unterminated escape") }
                let next = bytes[index]
                index += 1
                switch next {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    guard index + 4 <= bytes.count else { throw error("bad \\u escape") }
                    for offset in 0..<4 where !Self.isHexDigit(bytes[index + offset]) { throw error("bad \\u escape") }
                    index += 4
                default: throw error("bad escape")
                }
            case 0..<0x20: throw error("control character in a string")
            default: break
            }
        }
    }

    /// A string's text, escapes decoded (for the few strings kept, not the many compared).
    public mutating func decodedString() throws(ParseError) -> String {
        let start = index
        let (range, escaped) = try string()
        guard escaped else { return String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
        var parser = JSONValue.Parser(Array(bytes[start..<index]))
        parser.skipBlanks()
        return try parser.string()
    }

    /// Whether the bytes of `range` are `text`'s.
    public func bytes(_ range: Range<Int>, equal text: StaticString) -> Bool {
        guard range.count == text.utf8CodeUnitCount else { return false }
        let expected = text.utf8Start
        for offset in 0..<range.count where bytes[range.lowerBound + offset] != expected[offset] { return false }
        return true
    }

    /// A number, checked: its value when it is an integer from 0 to 2^64 - 1, else nil
    /// (negative, fractional, exponent, or too large).
    public mutating func unsignedNumber() throws(ParseError) -> UInt64? {
        skipBlanks()
        let start = index
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        let digits = index
        var value: UInt64 = 0
        var fits = bytes[start] != UInt8(ascii: "-")
        while index < bytes.count, (0x30...0x39).contains(bytes[index]) {
            if fits {
                let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[index] - 0x30))
                if overflow1 || overflow2 { fits = false } else { value = sum }
            }
            index += 1
        }
        guard index > digits else { throw error("unexpected character") }
        // RFC 8259: no leading zeros.
        if bytes[digits] == 0x30, index - digits > 1 { throw error("bad number") }
        var integral = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            integral = false
            index += 1
            try requireDigits()
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            try requireDigits()
        }
        return integral && fits ? value : nil
    }

    private mutating func requireDigits() throws(ParseError) {
        let start = index
        while index < bytes.count, (0x30...0x39).contains(bytes[index]) { index += 1 }
        guard index > start else { throw error("bad number") }
    }

    /// `true` or `false`; nil (nothing consumed) when the value is something else.
    public mutating func boolean() throws(ParseError) -> Bool? {
        switch peek() {
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        default: return nil
        }
    }

    private mutating func literal(_ text: StaticString) throws(ParseError) {
        let expected = text.utf8Start
        for offset in 0..<text.utf8CodeUnitCount {
            guard index < bytes.count, bytes[index] == expected[offset] else { throw error("expected \(text)") }
            index += 1
        }
    }

    /// Each member of an object (the cursor at its `{`): `body` gets the key's bytes and must
    /// read the member's value (or `skipValue` it).
    public mutating func members(depth: Int,
                                 _ body: (inout JSONScanner, Range<Int>) throws(ParseError) -> Void) throws(ParseError) {
        guard depth < JSONValue.Parser.maxDepth else { throw error("nested too deeply") }
        guard peek() == UInt8(ascii: "{") else { throw error("expected an object") }
        index += 1
        if peek() == UInt8(ascii: "}") { index += 1; return }
        var count = 0
        while true {
            let (key, _) = try string()
            guard peek() == UInt8(ascii: ":") else { throw error("expected :") }
            index += 1
            try body(&self, key)
            count += 1
            guard count <= JSONValue.Parser.maxMembers else { throw error("too many members") }
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return
            default: throw error("expected , or }")
            }
        }
    }

    /// Each element of an array (the cursor at its `[`): `body` must read the element (or
    /// `skipValue` it).
    public mutating func elements(depth: Int, _ body: (inout JSONScanner) throws(ParseError) -> Void) throws(ParseError) {
        guard depth < JSONValue.Parser.maxDepth else { throw error("nested too deeply") }
        guard peek() == UInt8(ascii: "[") else { throw error("expected an array") }
        index += 1
        if peek() == UInt8(ascii: "]") { index += 1; return }
        var count = 0
        while true {
            try body(&self)
            count += 1
            guard count <= JSONValue.Parser.maxMembers else { throw error("too many members") }
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): index += 1; return
            default: throw error("expected , or ]")
            }
        }
    }

    /// Reads over any value, checking it.
    public mutating func skipValue(depth: Int) throws(ParseError) {
        switch peek() {
        case nil: throw error("unexpected end")
        case UInt8(ascii: "{"): try members(depth: depth + 1) { (scanner, _) throws(ParseError) in try scanner.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["): try elements(depth: depth + 1) { (scanner) throws(ParseError) in try scanner.skipValue(depth: depth + 1) }
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try boolean()
        case UInt8(ascii: "n"): try literal("null")
        default: _ = try unsignedNumber()
        }
    }

    /// Whether the value here is an array, not consumed.
    public mutating func atArray() -> Bool { peek() == UInt8(ascii: "[") }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }
}
