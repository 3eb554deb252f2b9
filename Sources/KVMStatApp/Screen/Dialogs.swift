import KVMCore
import KVMSources

/// The screen's dialogs and messages, worded as upstream words them.
extension InteractiveScreen {
    /// Upstream's reference, with the sources that can show guests named in `b`'s line (the
    /// registry's, so it cannot drift) and `x` also covering per-vCPU rows.
    static func helpLines(guestSources: [String]) -> [String] { [
        "   b     toggle events by guests (\(guestSources.joined(separator: ", ")); honors filters)",
        "   c     clear filter",
        "   f     filter by regular expression",
        "   g     filter by guest name/PID",
        "   h     display interactive commands reference",
        "   l     toggle the exit latency view (with --source bpf --latency)",
        "   o     toggle sorting order (Total vs CurAvg/s)",
        "   p     filter by guest name/PID",
        "   q     quit",
        "   r     reset stats",
        "   s     set delay between refreshs (value range: 0.1-25.5 secs)",
        "   v     toggle the vCPU time view (with --source vcpu)",
        "   x     toggle reporting of stats for individual child trace events and vCPUs",
        "Any other key refreshes statistics immediately",
    ] }

    func helpScreen() throws(Failure) {
        terminal.erase()
        terminal.put(0, 0, "Interactive commands reference", Terminal.bold)
        terminal.put(2, 0, "Press any key to exit", Terminal.standout)
        for (i, line) in Self.helpLines(guestSources: guestSources).enumerated() { terminal.put(4 + i, 0, line) }
        terminal.refresh()
        if !terminal.anyKey() { throw .end(.success) }
    }

    /// Centered lines and a hint; any key continues (Ctrl-C quits).
    func message(_ lines: [String]) throws(Failure) {
        terminal.erase()
        var row = 2
        for line in lines {
            terminal.put(row, max(0, (terminal.width - line.count) / 2), line)
            row += 1
        }
        let hint = "Press any key to continue"
        terminal.put(row + 1, max(0, (terminal.width - hint.count) / 2), hint, Terminal.standout)
        terminal.refresh()
        if !terminal.anyKey() { throw .end(.success) }
    }

    func filterDialog() throws(Failure) {
        var message = ""
        while true {
            terminal.erase()
            terminal.put(0, 0, "Show statistics for events matching a regex.", Terminal.bold)
            terminal.put(2, 0, "Current regex: \((stats.fieldsFilter?.pattern ?? "").escapedForDisplay)")
            terminal.put(5, 0, message)
            terminal.put(3, 0, "New regex: ")
            terminal.refresh()
            guard let regex = terminal.readLine(3, 11) else { throw .end(.success) }
            if regex.isEmpty {
                try apply { () throws(SourceError) in try self.stats.setFieldsFilter(nil) }
                return
            }
            guard let filter = try? FieldFilter(regex) else {
                message = "\"\(regex.escapedForDisplay)\": Not a valid regular expression"
                continue
            }
            try apply { () throws(SourceError) in try self.stats.setFieldsFilter(filter) }
            return
        }
    }

    func delayDialog() throws(Failure) {
        var message = ""
        while true {
            terminal.erase()
            terminal.put(0, 0, "Set update interval (defaults to 3.0s).", Terminal.bold)
            terminal.put(4, 0, message)
            let prompt = "Change delay from \(ScreenModel.cFormat("%.1f", delay))s to "
            terminal.put(2, 0, prompt)
            terminal.refresh()
            guard let text = terminal.readLine(2, prompt.count) else { throw .end(.success) }
            if text.isEmpty {
                delay = Options.delayDefault
                return
            }
            guard let value = parsePythonFloat(text) else {
                message = "\"\(text.escapedForDisplay)\": Invalid value"
                continue
            }
            if let problem = delayProblem(value) {
                message = problem
                continue
            }
            delay = value
            return
        }
    }

    func guestDialog() throws(Failure) {
        var message = ""
        var pid = 0
        while true {
            terminal.erase()
            terminal.put(0, 0, "Show statistics for specific guest or pid.", Terminal.bold)
            terminal.put(1, 0, "This might limit the shown data to the trace statistics.")
            terminal.put(5, 0, message)
            listGuests(from: 7)
            let prompt = "Guest or pid [ENTER exits]: "
            terminal.put(3, 0, prompt)
            terminal.refresh()
            guard let guest = terminal.readLine(3, prompt.count) else { throw .end(.success) }
            if guest.isEmpty || guest == "0" { break }
            if guest.allSatisfy(\.isASCII) && guest.allSatisfy(\.isNumber) {
                guard let number = Int(guest), guests.isRunning(number) else {
                    message = "\"\(guest)\": Not a running process"
                    continue
                }
                pid = number
                break
            }
            let pids = guests.pids(named: guest)
            if pids.isEmpty {
                message = "\"\(guest.escapedForDisplay)\": Not an active guest"
                continue
            }
            if pids.count > 1 {
                message = "\"\(guest.escapedForDisplay)\": Multiple matches found, use pid filter instead"
                continue
            }
            pid = pids[0]
            break
        }
        try updatePid(pid)
    }

    private func listGuests(from line: Int) {
        terminal.put(line, 2, "Pid".rightAligned(to: 8) + "  "
            + "Guest Name (fuzzy list, might be inaccurate!)".padded(to: 60), Terminal.underline)
        var row = line + 1
        for guest in guests.all() {
            if row >= terminal.height { break }
            terminal.put(row, 2, String(guest.pid).rightAligned(to: 8) + "  "
                + TerminalText.padded(guest.name.escapedForDisplay, to: 60))
            row += 1
        }
    }
}
