import KVMCore

extension PrometheusFormat {
    /// KVM's histograms (qmp: `halt_wait_hist`) as Prometheus histograms: `kvm_halt_wait_seconds`
    /// with cumulative `le` buckets in base units, per vCPU where the source has them, and a
    /// `_count` in the text format; KVM keeps no sum, so there is no `_sum` (promtool accepts
    /// that; OpenMetrics then wants no `_count` either). Written as bytes: a series' labels
    /// once, not once a bucket, and the bounds of each shape of histogram once.
    func appendHistogramFamilies(_ sample: Sample, to out: inout [UInt8]) {
        let perVCPU = Set(sample.histograms.keys.compactMap { $0.vcpu != nil ? $0.family : nil })
        var byFamily: [String: [(EventID, Histogram)]] = [:]
        var helps: [String: String] = [:]
        for (key, histogram) in sample.histograms {
            if key.vcpu == nil, let own = key.family, perVCPU.contains(own) { continue }
            let family = sample.family(of: key) ?? Self.undescribed(key)
            // `halt_wait_hist` → `kvm_halt_wait_hist_seconds` (not `kvm_halt_wait_seconds`: that
            // is the `halt_wait_ns` counter's family in OpenMetrics). The unit is the buckets'.
            var named = family
            named.unit = MetricUnit(histogram.unit ?? "")
            let name = Self.familyName(named, perGuest: key.guest != nil)
            byFamily[name, default: []].append((key, histogram))
            helps[name] = family.help + (family.origin == .kvmStatistic && histogram.sum == nil ? " (buckets since each VM started)" : " (since kvmstat started)")
        }
        var bounds: [BoundsKey: [[UInt8]]] = [:]
        for name in byFamily.keys.sorted() {
            let series = byFamily[name]!.sorted { $0.0 < $1.0 }
            out.append(contentsOf: "# HELP \(name) \(Self.escapeHelp(helps[name] ?? name))\n".utf8)
            out.append(contentsOf: "# TYPE \(name) histogram\n".utf8)
            for (key, histogram) in series {
                // Per vCPU, or per child (an exit reason of the bpf source's latencies).
                var labels = key.vcpu.map { [("vcpu", String($0))] } ?? key.childLabel.map { [("child", $0)] } ?? []
                if let guest = key.guest { labels = [("guest", sample.guestNames[guest] ?? ""), ("pid", String(guest))] + labels }
                var labelBytes: [UInt8] = []
                PrometheusWriter.appendLabels(labels, to: &labelBytes)
                // `name_bucket{labels,le="`, then each bucket's bound and count.
                var bucketHead = Array((name + "_bucket{").utf8) + labelBytes
                if !labelBytes.isEmpty { bucketHead.append(UInt8(ascii: ",")) }
                bucketHead.append(contentsOf: "le=\"".utf8)
                let shape = BoundsKey(histogram)
                let upper: [[UInt8]]
                if let known = bounds[shape] {
                    upper = known
                } else {
                    upper = histogram.buckets.indices.map { index in
                        Array((index == histogram.buckets.count - 1 ? "+Inf" : Self.upperBound(of: index, histogram)).utf8)
                    }
                    bounds[shape] = upper
                }
                var cumulative: UInt64 = 0
                for (index, count) in histogram.buckets.enumerated() {
                    cumulative &+= count
                    out.append(contentsOf: bucketHead)
                    out.append(contentsOf: upper[index])
                    out.append(contentsOf: "\"} ".utf8)
                    PrometheusWriter.appendDigits(cumulative, to: &out, newline: true)
                }
                if histogram.buckets.isEmpty {
                    out.append(contentsOf: bucketHead)
                    out.append(contentsOf: "+Inf\"} 0\n".utf8)
                }
                let braced = labelBytes.isEmpty ? [] : [UInt8(ascii: "{")] + labelBytes + [UInt8(ascii: "}")]
                // OpenMetrics allows `_count` only beside a `_sum`, which KVM does not keep (the
                // bpf source's latencies have one).
                if let sum = histogram.sum {
                    out.append(contentsOf: (name + "_sum").utf8)
                    out.append(contentsOf: braced)
                    out.append(contentsOf: (" " + Self.scaled(sum, base: histogram.base, exponent: histogram.exponent) + "\n").utf8)
                }
                if !openMetrics || histogram.sum != nil {
                    out.append(contentsOf: (name + "_count").utf8)
                    out.append(contentsOf: braced)
                    out.append(UInt8(ascii: " "))
                    PrometheusWriter.appendDigits(cumulative, to: &out, newline: true)
                }
            }
        }
    }

    /// What a histogram's bucket bounds depend on.
    private struct BoundsKey: Hashable {
        var log2: Bool
        var bucketSize: UInt64
        var base: Int
        var exponent: Int
        var count: Int

        init(_ histogram: Histogram) {
            switch histogram.scale {
            case .log2:
                log2 = true
                bucketSize = 0
            case .linear(let size):
                log2 = false
                bucketSize = size
            }
            base = histogram.base
            exponent = histogram.exponent
            count = histogram.buckets.count
        }
    }
}
