#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// `kvmstat --help`, laid out as argparse's RawTextHelpFormatter lays out upstream's, from the
/// option table (`Options.specs`) and the registries: the usage block, one blank line, the
/// description (upstream's, with the paths kvmstat reads and the `b` line naming the sources
/// that show guests; README, "Differences"), then each option with its help from column 24
/// (less on a terminal narrower than 44 columns), on a line of its own when the option is
/// longer than that column leaves room for.
enum HelpText {
    static func render(plugins: Plugins, program: String = "kvmstat", paths: SystemPaths = SystemPaths(),
                       columns: Int = 80) -> String {
        let width = columns - 2
        let helpPosition = min(24, max(width - 20, 4))
        let description = description.replacingPlaceholders(plugins: plugins)
            .replacing("{debugfs}", with: paths.debugfsKVM)
            .replacing("{tracing}", with: paths.tracing)
        var text = Options.usage(program: program, width: width) + "\n\n" + description + "\noptions:\n"
        for var spec in Options.specs {
            // The plugins' names, as registered.
            spec.help = spec.help.replacingPlaceholders(plugins: plugins)
            let names = spec.optionStrings.map { name in spec.metavar.map { "\(name) \($0)" } ?? name }
            let invocation = names.joined(separator: ", ")
            let helpLines = spec.help.split(separator: "\n").map(String.init)
            let indent = String(repeating: " ", count: helpPosition)
            if invocation.count <= helpPosition - 4 {
                text += "  " + invocation.padded(to: helpPosition - 2) + helpLines[0] + "\n"
            } else {
                text += "  " + invocation + "\n" + indent + helpLines[0] + "\n"
            }
            for line in helpLines.dropFirst() { text += indent + line + "\n" }
        }
        return text
    }

    /// Columns as Python's `shutil.get_terminal_size` finds them for argparse: `COLUMNS` when
    /// it is a positive number, else standard output's terminal, else 80.
    static func terminalColumns() -> Int {
        if let value = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), value > 0 { return value }
        var size = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return 80
    }

    static let description = """
        This program displays various statistics about VMs running under KVM.
        The statistics are gathered from the KVM debugfs entries and / or the
        currently available perf traces.

        The monitoring takes additional cpu cycles and might affect the VM's
        performance.

        Requirements:
        - Access to:
            {debugfs}
            {tracing}/events/*
            /proc/pid/task
        - /proc/sys/kernel/perf_event_paranoid < 1 if user has no
          CAP_SYS_ADMIN and perf events are used.
        - CAP_SYS_RESOURCE if the hard limit is not high enough to allow
          the large number of files that are possibly opened.

        Interactive Commands:
           b     toggle events by guests ({guestSources}; honors filters)
           c     clear filter
           f     filter by regular expression
           g     filter by guest name
           h     display interactive commands reference
           o     toggle sorting order (Total vs CurAvg/s)
           p     filter by PID
           q     quit
           r     reset stats
           s     set update interval (value range: 0.1-25.5 secs)
           x     toggle reporting of stats for individual child trace events
        Press any other key to refresh statistics immediately.

        """
}
