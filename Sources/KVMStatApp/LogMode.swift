#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// `-l` / `-L FILE`: a record of deltas every DELAY seconds under a banner, upstream's rules:
/// the banner again every 20 records (not for CSV in a file), not for a CSV file that already
/// has content, and anew after SIGHUP reopens the file.
struct LogMode {
    let stats: Stats
    let format: any Format
    let sink: LogSink
    let delay: Double
    let skipZero: Bool
    var byGuest = false
    var waiter: any Waiter = SignalWaiter()

    static let bannerEvery = 20

    /// Records written since the last banner, and whether the banner is the last thing written.
    private var records = 0
    private var bannerShown = true
    /// The columns (events in upstream's order; by guest, each record has its own rows), and
    /// the same as a set, to notice new ones.
    private var keys: [EventID] = []
    private var known: Set<EventID> = []

    init(stats: Stats, format: any Format, sink: LogSink, delay: Double, skipZero: Bool, byGuest: Bool = false) {
        self.stats = stats
        self.format = format
        self.sink = sink
        self.delay = delay
        self.skipZero = skipZero
        self.byGuest = byGuest
    }

    /// Runs until a signal ends it (Ctrl-C: status 0) or a write fails.
    mutating func run() throws(Failure) -> Ending {
        let request = ReadRequest(byGuest: byGuest, perGuest: format.labelsGuests, histograms: format.showsHistograms)
        var latest = try stats.sample(request)
        keys = latest.sortedKeys
        known = Set(keys)
        // logrotate's SIGHUP is taken between samples, however long one takes — under nohup
        // too: it reopens the file, it does not end kvmstat (as upstream's -L handler).
        if sink.isFile {
            Signals.takeLater(SIGHUP)
            Signals.heed(SIGHUP)
        }
        try writeBanner(of: latest)
        var schedule = Schedule(delay: delay, waiter: waiter)
        do throws(Failure) {
            while true {
                try schedule.waitForNextSample { (signal) throws(Failure) in
                    guard signal == SIGHUP && sink.isFile else { throw .end(.on(signal)) }
                    try rotate(of: latest)
                }
                latest = try stats.sample(request)
                try discover(in: latest)
                try record(latest)
            }
        } catch .end(let ending) {
            return ending
        }
    }

    /// Columns that appeared (a log started before its guests: qmp and libvirt have no
    /// statistics until a guest answers) join the record at once, under a new banner — for
    /// CSV too, where the banner is otherwise written once: the columns are not the same.
    /// Columns that went stay (with 0), so a script's columns never shift.
    private mutating func discover(in sample: Sample) throws(Failure) {
        guard !byGuest, sample.values.keys.contains(where: { !known.contains($0) }) else { return }
        known.formUnion(sample.values.keys)
        keys = known.sorted()
        guard let banner = format.banner(keys: keys, of: sample) else { return }
        try sink.write(line: banner)
        records = 0
        bannerShown = true
    }

    /// logrotate moved the file: a new file, a new banner; the sample comes on schedule.
    private mutating func rotate(of sample: Sample) throws(Failure) {
        do { try sink.reopen() } catch {
            throw .upstream("Error: Could not open file: \(sink.path ?? "") (\(error))")
        }
        records = 0
        bannerShown = true
        try writeBanner(of: sample)
    }

    /// One record (and the banner again when it is due); by guest, with the guests there are now.
    private mutating func record(_ sample: Sample) throws(Failure) {
        if records % Self.bannerEvery == 0 && !bannerShown && (!sink.isFile || format.repeatsBannerInFile) {
            try writeBanner(of: sample)
            bannerShown = true
        }
        let rows = byGuest ? sample.sortedKeys : keys
        guard !skipZero || rows.contains(where: { sample.values[$0]?.delta ?? 0 != 0 }) else { return }
        try sink.write(line: format.record(sample, keys: rows))
        records += 1
        bannerShown = false
    }

    /// The banner of the columns, named as `sample` shows them.
    private func writeBanner(of sample: Sample) throws(Failure) {
        guard let banner = format.banner(keys: keys, of: sample) else { return }
        if sink.isFile && !format.repeatsBannerInFile && !sink.isEmpty { return }
        try sink.write(line: banner)
    }
}
