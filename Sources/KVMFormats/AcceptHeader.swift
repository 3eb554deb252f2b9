import KVMCore

/// HTTP's Accept header (RFC 9110 §12.5.1): media ranges with their q values, as scrapers
/// send them (`application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,
/// */*;q=0.1`). Parameters other than q are ignored: a format serves one version per type.
public enum AcceptHeader {
    public struct Range: Sendable, Equatable {
        public var type: String
        public var quality: Double
    }

    /// At most this many ranges are looked at (the header itself is bounded by the server).
    static let maxRanges = 64

    /// The ranges of a header value; malformed members are skipped.
    public static func parse(_ value: String) -> [Range] {
        var ranges: [Range] = []
        for member in value.split(separator: ",").prefix(maxRanges) {
            let parts = member.split(separator: ";")
            guard let first = parts.first else { continue }
            let type = first.trimmingBlanks().lowercased()
            guard type.split(separator: "/", omittingEmptySubsequences: false).count == 2 else { continue }
            var quality = 1.0
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingBlanks().lowercased() }
                if pair.count == 2, pair[0] == "q", let q = Double(pair[1]), q.isFinite {
                    quality = min(max(q, 0), 1)
                }
            }
            ranges.append(Range(type: type, quality: quality))
        }
        return ranges
    }

    /// The q the most specific matching range gives `type` (`text/plain` over `text/*` over
    /// `*/*`); 0 when none matches.
    public static func quality(of type: String, in ranges: [Range]) -> Double {
        let major = type.split(separator: "/").first.map(String.init) ?? type
        var best: (specificity: Int, quality: Double)?
        for range in ranges {
            let specificity: Int
            if range.type == type {
                specificity = 2
            } else if range.type == major + "/*" {
                specificity = 1
            } else if range.type == "*/*" {
                specificity = 0
            } else {
                continue
            }
            if best == nil || specificity > best!.specificity
                || (specificity == best!.specificity && range.quality > best!.quality) {
                best = (specificity, range.quality)
            }
        }
        return best?.quality ?? 0
    }
}
