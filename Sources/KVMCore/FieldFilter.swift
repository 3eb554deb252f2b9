/// The `-f REGEX` field filter with Python `re.match` semantics: Python's syntax (see
/// `PythonRegex`), matched by code points, at the start of the field name, not necessarily
/// the whole of it.
public struct FieldFilter: @unchecked Sendable {
    // Regex<AnyRegexOutput> is immutable once built; it is only used to match.
    private let regex: Regex<AnyRegexOutput>
    public let pattern: String

    public init(_ pattern: String) throws(FieldFilterError) {
        let swift: String
        do { swift = try PythonRegex.translate(pattern) } catch {
            throw FieldFilterError(pattern: pattern, unsupported: error.validInPython ? error.description : nil)
        }
        do {
            regex = try Regex(swift).matchingSemantics(.unicodeScalar)
        } catch {
            throw FieldFilterError(pattern: pattern)
        }
        self.pattern = pattern
    }

    public func matches(_ field: String) -> Bool {
        (try? regex.prefixMatch(in: field)) != nil
    }
}

/// An invalid regular expression, worded as upstream words it; or a valid Python one that
/// uses what kvmstat cannot honour, said so.
public struct FieldFilterError: Error, Sendable, CustomStringConvertible {
    public let pattern: String
    public var unsupported: String?

    public init(pattern: String, unsupported: String? = nil) {
        self.pattern = pattern
        self.unsupported = unsupported
    }

    public var description: String {
        if let unsupported { return "\"\(pattern)\" uses \(unsupported), which kvmstat does not support" }
        return "\"\(pattern)\" is not a valid regular expression"
    }
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

extension Optional where Wrapped == FieldFilter {
    /// Indices of `fields` the filter wants, and the parent of each wanted child (a child
    /// alone would show nothing), in that order: every source selects its fields here.
    public func select(_ fields: [String], parentOf: (String) -> String?) -> [Int] {
        let index = Dictionary(fields.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var chosen = fields.indices.filter { wants(fields[$0]) }
        var present = Set(chosen)
        for field in chosen {
            if let parent = parentOf(fields[field]), let parentIndex = index[parent],
               present.insert(parentIndex).inserted {
                chosen.append(parentIndex)
            }
        }
        return chosen
    }
}
