import KVMCore

/// What a guest's `query-stats-schemas` says of its statistics: each one's kind, unit and
/// description, and its histograms' shapes (asked once a guest, the first time).
extension QMPSource {
    /// What `query-stats-schemas` says of a guest's statistics (vm and vcpu targets).
    struct Schema: Sendable {
        var kinds: [String: StatKind] = [:]
        var histograms: [String: Histogram] = [:]
        var families: [String: MetricFamily] = [:]
    }

    /// What QEMU's schema entry says a statistic is: its kind and unit (`unit`, `base`,
    /// `exponent`: `halt_wait_ns` is seconds × 10^-9; `boolean` a flag).
    static func family(_ name: String, _ stat: JSONValue, kind: StatKind) -> MetricFamily {
        let unitName = stat["unit"]?.stringValue ?? ""
        let metricKind: MetricKind
        switch kind {
        case .counter: metricKind = .counter
        case .level: metricKind = unitName == "boolean" ? .boolean : .gauge
        case .histogram: metricKind = .histogram
        }
        let unit = unitName == "boolean" ? MetricUnit.none
            : unitName.isEmpty ? (kind == .counter ? .events : .none)
            : MetricUnit(unitName, base: stat["base"]?.intValue ?? 10, exponent: stat["exponent"]?.intValue ?? 0)
        return MetricFamily(name, kind: metricKind, unit: unit, help: "KVM statistic \(name)", origin: .kvmStatistic)
    }

    static func schema(_ session: QMPSession) throws(QMPSession.Failure) -> Schema {
        schema(try session.execute("query-stats-schemas"))
    }

    /// What a `query-stats-schemas` answer says.
    static func schema(_ answer: JSONValue) -> Schema {
        var schema = Schema()
        for provider in answer.arrayValue ?? [] {
            for stat in provider["stats"]?.arrayValue ?? [] {
                guard let name = stat["name"]?.stringValue, acceptable(name) else { continue }
                // No more descriptions than the book keeps statistics (a hostile schema of
                // thousands must not be held, per guest, until the sample is taken).
                guard schema.kinds[name] != nil || schema.kinds.count < GuestStatBook.maxStatistics else { break }
                switch stat["type"]?.stringValue {
                case "cumulative": schema.kinds[name] = .counter
                case "instant", "peak": schema.kinds[name] = .level
                default:
                    schema.kinds[name] = .histogram
                    schema.histograms[name] = HistogramBook.shape(stat)
                }
                schema.families[name] = family(name, stat, kind: schema.kinds[name]!)
            }
        }
        return schema
    }
}
