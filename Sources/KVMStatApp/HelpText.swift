/// `kvmstat --help`, laid out like argparse's RawTextHelpFormatter output, from the option
/// table (`Options.specs`) and the registries. Its description block is upstream's but for
/// the `b` line, which names the sources that show guests (README, "Differences").
enum HelpText {
    static func render(plugins: Plugins) -> String {
        var text = Options.usage(program: KVMStat.program) + "\n\n" + description.replacingPlaceholders(plugins: plugins)
            + "\noptions:\n"
        for var spec in Options.specs {
            // The plugins' names, as registered.
            spec.help = spec.help.replacingPlaceholders(plugins: plugins)
            let names = spec.optionStrings.map { name in spec.metavar.map { "\(name) \($0)" } ?? name }
            let invocation = "  " + names.joined(separator: ", ")
            let helpLines = spec.help.split(separator: "\n").map(String.init)
            if invocation.count <= 24 {
                text += invocation.padded(to: 26) + helpLines[0] + "\n"
            } else {
                text += invocation + "\n" + String(repeating: " ", count: 26) + helpLines[0] + "\n"
            }
            for line in helpLines.dropFirst() {
                text += String(repeating: " ", count: 26) + line + "\n"
            }
        }
        return text
    }

    static let description = """

        This program displays various statistics about VMs running under KVM.
        The statistics are gathered from the KVM debugfs entries and / or the
        currently available perf traces.

        The monitoring takes additional cpu cycles and might affect the VM's
        performance.

        Requirements:
        - Access to:
            <debugfs>/kvm
            <tracefs>/events/*
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
