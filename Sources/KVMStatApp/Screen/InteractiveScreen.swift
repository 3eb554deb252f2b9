#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMSources

/// The default mode: kvm_stat's top-like screen. Each frame is drawn whole and shown with one
/// refresh (no flicker); a resize redraws at once; `q` and Ctrl-C restore the terminal and
/// leave without waiting for the kernel to tear the perf events down.
final class InteractiveScreen {
    static let initialDelay = 0.25

    let stats: Stats
    let guests = Guests()
    var delay: Double
    var sortByTotal = false
    var displayGuests = false
    /// The latency view (`l`) in place of the counts.
    var showLatency = false
    /// Whether a source times exits (`--latency`); else `l` says how to ask for it.
    let timesLatency: Bool
    /// The vCPU view (`v`): shares of wall time by state, from the guests' values of this
    /// frame and the last.
    var showVCPUs = false
    private var lastGuestValues = GuestValues()
    private var lastGuestTime = 0.0
    /// The watched guest's name, to re-attach when a guest of that name comes back.
    var guestName = ""
    var terminal: Terminal!

    /// The message `b` shows when a source cannot break counts down by guest.
    let byGuestRefusal: [String]
    /// The sources that can show guests (for the help screen).
    let guestSources: [String]

    init(stats: Stats, delay: Double, byGuestRefusal: [String], guestSources: [String], timesLatency: Bool) {
        self.timesLatency = timesLatency
        self.byGuestRefusal = byGuestRefusal
        self.guestSources = guestSources
        self.stats = stats
        self.delay = delay
    }

    /// Runs until `q`, Ctrl-C or a signal; the terminal is restored before any message.
    func run() throws(Failure) -> Ending {
        Console.emergencyTerminalRestore = Terminal.emergencyRestorer()
        guard let terminal = Terminal() else {
            throw .message("cannot start the screen on this terminal (TERM="
                + (getenv("TERM").map { String(cString: $0) } ?? "") + "); use -1 or -l")
        }
        self.terminal = terminal
        Console.restoreTerminal = { terminal.end() }
        defer {
            terminal.end()
            // Reported once the terminal is back, where the operator can read them.
            for warning in stats.takeWarnings() { Console.warn(warning) }
        }
        guestName = guests.name(of: stats.pidFilter)
        drawHeader()
        terminal.put(4, 1, "Collecting data...")
        terminal.refresh()
        return try loop()
    }

    /// Frames and keys: a frame, then a key or the delay, until the screen ends.
    private func loop() throws(Failure) -> Ending {
        var wait = Self.initialDelay
        var start = -Double.infinity
        while true {
            try drawFrame(interval: Signals.monotonicNow() - start)
            start = Signals.monotonicNow()
            let input = terminal.key(within: wait)
            wait = delay
            switch input {
            case nil: continue
            case .key(let key):
                guard let next = try handle(key) else { return .success }
                wait = next ?? wait
            // Ctrl-C ends cleanly; SIGTERM, SIGHUP, SIGQUIT as they end kvm_stat's: by the signal.
            case .signal(let signal): return .on(signal)
            case .hangup: throw .message("the terminal has gone away")
            }
        }
    }

    /// Acts on a key: nil to quit, else the wait before the next frame when a dialog asks
    /// for a quick one (`.some(nil)`: the delay).
    private func handle(_ key: Int32) throws(Failure) -> Double?? {
        switch key {
        case Int32(UInt8(ascii: "q")), Terminal.controlC: return nil
        case Int32(UInt8(ascii: "b")): try toggleGuests()
        case Int32(UInt8(ascii: "c")):
            try apply { () throws(SourceError) in try self.stats.setFieldsFilter(nil) }
            try updatePid(0)
        case Int32(UInt8(ascii: "f")):
            try filterDialog()
            return .some(Self.initialDelay)
        case Int32(UInt8(ascii: "g")), Int32(UInt8(ascii: "p")):
            try guestDialog()
            return .some(Self.initialDelay)
        case Int32(UInt8(ascii: "h")): try helpScreen()
        case Int32(UInt8(ascii: "l")):
            guard timesLatency else {
                try message(Self.noLatency)
                return .some(nil)
            }
            showLatency.toggle()
            if showLatency { showVCPUs = false }
        case Int32(UInt8(ascii: "o")): sortByTotal.toggle()
        case Int32(UInt8(ascii: "v")):
            guard stats.sources.contains(where: { $0.name == "vcpu" }) else {
                try message(Self.noVCPUTimes)
                return .some(nil)
            }
            showVCPUs.toggle()
            if showVCPUs { showLatency = false }
            lastGuestValues = [:]
            return .some(Self.initialDelay)
        case Int32(UInt8(ascii: "r")): try apply { () throws(SourceError) in try self.stats.reset() }
        case Int32(UInt8(ascii: "s")):
            try delayDialog()
            return .some(Self.initialDelay)
        case Int32(UInt8(ascii: "x")): stats.childEvents.toggle()
        default: break  // any other key, a resize included, refreshes at once
        }
        return .some(nil)
    }

    /// Runs a change of the stats; a failure ends the screen with its message.
    func apply(_ change: () throws(SourceError) -> Void) throws(Failure) {
        try Failure.fromSource(change)
    }

    private var headline: String { ScreenModel.headline(pid: stats.pidFilter, guestName: guestName) }

    func drawHeader() {
        terminal.erase()
        terminal.put(0, 0, headline, Terminal.bold)
        if let filter = stats.fieldsFilter {
            terminal.put(1, 17, ScreenModel.regexLine(filter.pattern))
        }
        if !showLatency && !showVCPUs {
            terminal.put(2, 1, ScreenModel.columnHeader(displayGuests: displayGuests), Terminal.standout)
        }
    }

    func drawFrame(interval: Double) throws(Failure) {
        let pid = stats.pidFilter
        if pid > 0 && !guests.isRunning(pid) {
            if !guestName.isEmpty {
                let pids = guests.pids(named: guestName)
                if pids.count == 1 {
                    try updatePid(pids[0])
                    return
                }
            }
            // Leave the last data on screen, marked.
            let marker = ScreenModel.deadMarker
            terminal.put(0, min(headline.count, 80 - marker.count), marker,
                         Terminal.blink | Terminal.standout)
            terminal.refresh()
            return
        }
        let sample = try Failure.fromSource { () throws(SourceError) in
            try stats.read(ReadRequest(byGuest: displayGuests && !showVCPUs, perGuest: showVCPUs, histograms: timesLatency))
        }
        if showLatency { return drawLatency(sample) }
        if showVCPUs { return drawVCPUs(sample) }
        let body = ScreenModel.body(
            values: sample.values, sortByTotal: sortByTotal, childEvents: stats.childEvents,
            displayGuests: displayGuests, interval: interval, height: terminal.height,
            name: sample.name(of:),
            guestName: { pid in EventID.specialGuestLabel(pid) ?? sample.guestNames[pid] ?? "" })
        drawHeader()
        var line = 3
        for row in body.rows {
            terminal.put(line, 1, row)
            line += 1
        }
        if let message = body.message { terminal.put(4, 1, message) }
        if let total = body.total { terminal.put(line, 1, total, Terminal.bold) }
        terminal.refresh()
    }

    /// The latency view: each timed latency's rows from line 2; a line saying why when none.
    private func drawLatency(_ sample: Sample) {
        drawHeader()
        let families = LatencyReport.families(sample)
        if families.isEmpty { terminal.put(4, 1, LatencyReport.nothingTimed) }
        for (i, line) in ScreenModel.latencyLines(families, height: terminal.height).enumerated() {
            terminal.put(2 + i, 1, line, line.hasSuffix("since start or r)") ? Terminal.bold : 0)
        }
        terminal.refresh()
    }

    /// The vCPU view: each guest's vCPUs, their shares of the time since the last frame.
    private func drawVCPUs(_ sample: Sample) {
        let now = Signals.monotonicNow()
        let rows = VCPUShares.rows(current: sample.guestValues, previous: lastGuestValues, interval: now - lastGuestTime)
        let halts = sample.guestValues.columns.contains { $0.parent == "halt_wait_ns" && $0.vcpu != nil }
        lastGuestValues = sample.guestValues
        lastGuestTime = now
        drawHeader()
        let lines = VCPUShares.lines(rows, halts: halts, guestName: { sample.guestNames[$0] ?? "" }, height: terminal.height)
        for (i, line) in lines.enumerated() { terminal.put(2 + i, 1, line, i == 0 ? Terminal.standout : 0) }
        if rows.isEmpty { terminal.put(4, 1, "Collecting data... (no vCPU thread seen yet)") }
        terminal.refresh()
    }

    static let noVCPUTimes = [
        "No vCPU times are read:",
        "start kvmstat with --source vcpu (and qmp for halted and polling time: --source vcpu,qmp).",
    ]

    static let noLatency = [
        "No exit latencies are timed:",
        "start kvmstat with --source bpf --latency to time them (l shows them then).",
    ]

    /// Watches another pid (0: all), taking the guest's name for the header.
    func updatePid(_ pid: Int) throws(Failure) {
        guestName = guests.name(of: pid)
        drawHeader()
        terminal.put(4, 1, "Updating pid filter...")
        terminal.refresh()
        try apply { () throws(SourceError) in try self.stats.setPidFilter(pid) }
    }

    private func toggleGuests() throws(Failure) {
        guard stats.supportsByGuest else { return try message(byGuestRefusal) }
        displayGuests.toggle()
        // A read now is the new rows' baseline: the next frame shows their rate, not their total.
        try apply { () throws(SourceError) in _ = try self.stats.read(ReadRequest(byGuest: self.displayGuests, histograms: self.timesLatency)) }
    }
}
