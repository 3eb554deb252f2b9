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
    /// Where the cursor is (only readers in this type move it; `rewind` goes back).
    public var index: Int { position }
    @usableFromInline var position: Int

    /// The limits `JSONValue.parse` has too: nesting, and members of one object or array.
    public static let maxDepth = 64
    public static let maxMembers = 65_536

    @inlinable
    public init(_ bytes: UnsafeBufferPointer<UInt8>, from index: Int = 0) {
        self.bytes = bytes
        self.position = index
    }

    public typealias ParseError = JSONValue.ParseError

    public func error(_ reason: String) -> ParseError { ParseError(offset: position, reason: reason) }

    @inlinable
    public mutating func skipBlanks() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    /// The next byte after blanks, not consumed; nil at the end.
    @inlinable
    public mutating func peek() -> UInt8? {
        skipBlanks()
        return position < bytes.count ? bytes[position] : nil
    }

    /// Whether all was read but blanks.
    @inlinable
    public mutating func atEnd() -> Bool { peek() == nil }

    /// A string's content, between its quotes (escapes left as they are), and whether it has
    /// escapes; the text is checked (escapes well formed, no control characters).
    @inlinable
    public mutating func string() throws(ParseError) -> (bytes: Range<Int>, escaped: Bool) {
        guard peek() == UInt8(ascii: "\"") else { throw error("expected a string") }
        position += 1
        let start = position
        var escaped = false
        while true {
            guard position < bytes.count else { throw error("unterminated string") }
            let byte = bytes[position]
            position += 1
            switch byte {
            case UInt8(ascii: "\""): return (start..<(position - 1), escaped)
            case UInt8(ascii: "\\"):
                escaped = true
                guard position < bytes.count else { throw error("unterminated escape") }
                let next = bytes[position]
                position += 1
                switch next {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    guard position + 4 <= bytes.count else { throw error("bad \\u escape") }
                    for offset in 0..<4 where !Self.isHexDigit(bytes[position + offset]) { throw error("bad \\u escape") }
                    position += 4
                default: throw error("bad escape")
                }
            case 0..<0x20: throw error("control character in a string")
            default: break
            }
        }
    }

    /// Whether the bytes here (no blanks skipped) are `text`'s; consumed when they are. For
    /// readers that expect a peer's usual layout and take the general way when it differs.
    @inlinable
    public mutating func match(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard position + count <= bytes.count else { return false }
        let expected = text.utf8Start
        for offset in 0..<count where bytes[position + offset] != expected[offset] { return false }
        position += count
        return true
    }

    /// A string without escapes (the cursor after its opening quote): its content, the cursor
    /// after its closing quote; nil, nothing consumed, when it has escapes or control
    /// characters (`string()` reads those, or says why not).
    @inlinable
    public mutating func plainStringRest() -> Range<Int>? {
        var end = position
        while end < bytes.count {
            switch bytes[end] {
            case UInt8(ascii: "\""):
                defer { position = end + 1 }
                return position..<end
            case UInt8(ascii: "\\"), 0..<0x20: return nil
            default: end += 1
            }
        }
        return nil
    }

    /// Goes on to `end`, past a value a reader of the peer's usual layout checked itself
    /// (`QuickStatistic`: the same rules, without a call per byte).
    @inlinable
    public mutating func advance(to end: Int) {
        precondition(end >= position && end <= bytes.count, "a scanner only goes on within its bytes")
        position = end
    }

    /// Goes back to `mark`, an index this cursor was at.
    @inlinable
    public mutating func rewind(to mark: Int) {
        precondition(mark <= position, "a scanner only goes back")
        position = mark
    }

    /// A string's text, escapes decoded (for the few strings kept, not the many compared).
    public mutating func decodedString() throws(ParseError) -> String {
        let start = position
        let (range, escaped) = try string()
        guard escaped else { return String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
        var parser = JSONValue.Parser(Array(bytes[start..<position]))
        parser.skipBlanks()
        return try parser.string()
    }

    /// Whether the bytes of `range` are `text`'s.
    @inlinable
    public func bytes(_ range: Range<Int>, equal text: StaticString) -> Bool {
        guard range.count == text.utf8CodeUnitCount else { return false }
        let expected = text.utf8Start
        for offset in 0..<range.count where bytes[range.lowerBound + offset] != expected[offset] { return false }
        return true
    }

    /// A number, checked: its value when it is an integer from 0 to 2^64 - 1, else nil
    /// (negative, fractional, exponent, or too large).
    @inlinable
    public mutating func unsignedNumber() throws(ParseError) -> UInt64? {
        skipBlanks()
        let negative = position < bytes.count && bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        let digits = position
        while position < bytes.count, bytes[position] &- 0x30 < 10 { position += 1 }
        let count = position - digits
        guard count > 0 else { throw error("unexpected character") }
        // RFC 8259: no leading zeros.
        if bytes[digits] == 0x30, count > 1 { throw error("bad number") }
        var integral = true
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            integral = false
            position += 1
            try requireDigits()
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            integral = false
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            try requireDigits()
        }
        guard integral, count <= 20 else { return nil }
        // `-0` is 0, as the tree parser reads it; any other negative number is no count.
        if negative { return (digits..<position).allSatisfy { bytes[$0] == 0x30 } ? 0 : nil }
        // 19 digits cannot overflow; the 20th is checked.
        var value: UInt64 = 0
        for offset in 0..<min(count, 19) { value = value &* 10 &+ UInt64(bytes[digits + offset] &- 0x30) }
        if count == 20 {
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[digits + 19] &- 0x30))
            return overflow1 || overflow2 ? nil : sum
        }
        return value
    }

    @inlinable
    mutating func requireDigits() throws(ParseError) {
        let start = position
        while position < bytes.count, (0x30...0x39).contains(bytes[position]) { position += 1 }
        guard position > start else { throw error("bad number") }
    }

    /// `true` or `false`; nil (nothing consumed) when the value is something else.
    @inlinable
    public mutating func boolean() throws(ParseError) -> Bool? {
        switch peek() {
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        default: return nil
        }
    }

    @inlinable
    mutating func literal(_ text: StaticString) throws(ParseError) {
        let expected = text.utf8Start
        for offset in 0..<text.utf8CodeUnitCount {
            guard position < bytes.count, bytes[position] == expected[offset] else { throw error("expected \(text)") }
            position += 1
        }
    }

    /// Each member of an object (the cursor at its `{`): `body` gets the key's bytes and must
    /// read the member's value (or `skipValue` it).
    @inlinable
    public mutating func members(depth: Int,
                                 _ body: (inout JSONScanner, Range<Int>) throws(ParseError) -> Void) throws(ParseError) {
        guard depth < Self.maxDepth else { throw error("nested too deeply") }
        guard peek() == UInt8(ascii: "{") else { throw error("expected an object") }
        position += 1
        if peek() == UInt8(ascii: "}") { position += 1; return }
        var count = 0
        while true {
            let (key, _) = try string()
            guard peek() == UInt8(ascii: ":") else { throw error("expected :") }
            position += 1
            try body(&self, key)
            count += 1
            guard count <= Self.maxMembers else { throw error("too many members") }
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return
            default: throw error("expected , or }")
            }
        }
    }

    /// Each element of an array (the cursor at its `[`): `body` must read the element (or
    /// `skipValue` it).
    @inlinable
    public mutating func elements(depth: Int, _ body: (inout JSONScanner) throws(ParseError) -> Void) throws(ParseError) {
        guard depth < Self.maxDepth else { throw error("nested too deeply") }
        guard peek() == UInt8(ascii: "[") else { throw error("expected an array") }
        position += 1
        if peek() == UInt8(ascii: "]") { position += 1; return }
        var count = 0
        while true {
            try body(&self)
            count += 1
            guard count <= Self.maxMembers else { throw error("too many members") }
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return
            default: throw error("expected , or ]")
            }
        }
    }

    /// Reads over any value, checking it.
    @inlinable
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
    @inlinable
    public mutating func atArray() -> Bool { peek() == UInt8(ascii: "[") }

    @inlinable
    static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }
}
