/// The `-f REGEX` field filter with Python `re.match` semantics: the pattern must match at the
/// start of the field name, not necessarily the whole of it.
public struct FieldFilter: @unchecked Sendable {
    // Regex<AnyRegexOutput> is immutable once built; it is only used to match.
    private let regex: Regex<AnyRegexOutput>
    public let pattern: String

    public init(_ pattern: String) throws(FieldFilterError) {
        do {
            regex = try Regex(pattern)
        } catch {
            throw FieldFilterError(pattern: pattern)
        }
        self.pattern = pattern
    }

    public func matches(_ field: String) -> Bool {
        (try? regex.prefixMatch(in: field)) != nil
    }
}

/// An invalid regular expression, worded as upstream words it.
public struct FieldFilterError: Error, Sendable, CustomStringConvertible {
    public let pattern: String
    public var description: String { "\"\(pattern)\" is not a valid regular expression" }
}

extension Optional where Wrapped == FieldFilter {
    /// No filter wants every field.
    public func wants(_ field: String) -> Bool {
        switch self {
        case .none: return true
        case .some(let filter): return filter.matches(field)
        }
    }
}
