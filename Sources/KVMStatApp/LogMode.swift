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
    var maker = SampleMaker()

    static let bannerEvery = 20

    mutating func run() {
        let keys: [EventID]
        do {
            if format.wantsGuestEvents { try stats.enableGuestEvents() }
            keys = try stats.get(byGuest: byGuest).keys.sorted()
        } catch { Console.fail(error.description) }
        reportWarnings()
        // logrotate's SIGHUP is taken between samples, however long one takes.
        if sink.isFile { Signals.takeLater(SIGHUP) }
        var records = 0
        var bannerShown = true
        writeBanner(keys: keys)
        var last = Signals.monotonicNow()
        // Samples keep to a fixed schedule (start + n × delay), so the time a sample takes
        // does not stretch the interval; after a stall the schedule starts again from now.
        var deadline = last + delay
        while true {
            if Signals.monotonicNow() > deadline + delay { deadline = Signals.monotonicNow() + delay }
            // Wait for the next sample; signals are handled as they come.
            while let signal = Signals.wait(seconds: deadline - Signals.monotonicNow()) {
                guard signal == SIGHUP && sink.isFile else {
                    // Ctrl-C ends cleanly; others end as upstream ends on them.
                    if signal == SIGINT { return }
                    Console.leave(bySignal: signal)
                }
                // logrotate: new file, new banner; the sample comes on schedule.
                do { try sink.reopen() } catch {
                    Console.failAsUpstream("Error: Could not open file: \(sink.path ?? "") (\(error))")
                }
                records = 0
                bannerShown = true
                writeBanner(keys: keys)
            }
            deadline += delay
            if records % Self.bannerEvery == 0 && !bannerShown
                && (!sink.isFile || format.repeatsBannerInFile) {
                writeBanner(keys: keys)
                bannerShown = true
            }
            let now = Signals.monotonicNow()
            let values: [EventID: EventStat]
            do { values = try stats.get(byGuest: byGuest) } catch { Console.fail(error.description) }
            reportWarnings()
            let sample = maker.sample(values, of: stats, time: WallClock.now(), interval: now - last,
                                      guestEvents: format.wantsGuestEvents)
            last = now
            // By guest, each record has the guests there are now.
            let rows = byGuest ? values.keys.sorted() : keys
            if !skipZero || rows.contains(where: { values[$0]?.delta ?? 0 != 0 }) {
                sink.write(line: format.record(sample, keys: rows))
                records += 1
                bannerShown = false
            }
        }
    }

    private func writeBanner(keys: [EventID]) {
        guard let banner = format.banner(keys: keys) else { return }
        if sink.isFile && !format.repeatsBannerInFile && !sink.isEmpty { return }
        sink.write(line: banner)
    }

    private func reportWarnings() {
        for warning in stats.takeWarnings() { Console.warn(warning) }
    }
}
