import Testing

@testable import KVMStatApp

@Suite struct OptionParserTests {
    private func parse(_ args: String...) throws -> Options { try Options.parse(args) }

    private func error(_ args: String...) -> String? {
        do { _ = try Options.parse(args); return nil } catch { return error.message }
    }

    @Test func defaults() throws {
        let o = try parse()
        #expect(o == Options())
        #expect(o.delay == 3.0 && o.pid == 0 && o.fields == "")
    }

    @Test func aliasesOfOnce() throws {
        for arg in ["-1", "--once", "--batch", "--bat", "--on"] { #expect(try parse(arg).once) }
    }

    @Test func valueForms() throws {
        #expect(try parse("-s0.5").delay == 0.5)
        #expect(try parse("-s", "0.5").delay == 0.5)
        #expect(try parse("-s=0.5").delay == 0.5)
        #expect(try parse("--set-delay=2").delay == 2)
        #expect(try parse("--set-delay", "2").delay == 2)
        #expect(try parse("--set", "2").delay == 2)
        #expect(try parse("-fhelp").fields == "help")
        #expect(try parse("--fie", "help").fields == "help")
        #expect(try parse("--fields=kvm_exit").fields == "kvm_exit")
        #expect(try parse("--fields=").fields == "")
        #expect(try parse("-p", "42").pid == 42)
        #expect(try parse("-p", " 4_2 ").pid == 42)
        // Python reads any script's decimal digits, full-width and Arabic-Indic ones too.
        #expect(try parse("-p", "４２").pid == 42)
        #expect(try parse("-s", "１").delay == 1)
        #expect(try parse("-s", "٠.٥").delay == 0.5)
        #expect(error("-s", "½") != nil)
        #expect(try parse("-L", "/tmp/x.log").logFile == "/tmp/x.log")
        #expect(try parse("--source", "debugfs,tracepoint").sources == ["debugfs", "tracepoint"])
    }

    @Test func bundledFlags() throws {
        let o = try parse("-dt")
        #expect(o.debugfs && o.tracepoints)
        let p = try parse("-lcz")
        #expect(p.log && p.csv && p.skipZeroRecords)
        let q = try parse("-ds0.5")
        #expect(q.debugfs && q.delay == 0.5)
        let r = try parse("-dp", "7")
        #expect(r.debugfs && r.pid == 7)
    }

    /// argparse with no positional arguments (upstream's): `--` ends the options and it and
    /// everything after it are unrecognized, a trailing `--` too.
    @Test func doubleDashAsArgparse() throws {
        #expect(error("--", "-d") == "unrecognized arguments: -- -d")
        #expect(error("-d", "--") == "unrecognized arguments: --")
        #expect(error("-1", "--", "--") == "unrecognized arguments: -- --")
        #expect(error("x", "--", "-1") == "unrecognized arguments: x -- -1")
        #expect(error("-s", "--", "1") == "argument -s/--set-delay: expected one argument")
    }

    @Test func lastValueWins() throws {
        #expect(try parse("-s", "1", "-s", "2").delay == 2)
    }

    @Test func errorsAsArgparseWordsThem() {
        #expect(error("--foo") == "unrecognized arguments: --foo")
        #expect(error("-x") == "unrecognized arguments: -x")
        #expect(error("extra", "more") == "unrecognized arguments: extra more")
        #expect(error("-s") == "argument -s/--set-delay: expected one argument")
        #expect(error("-s", "-1") == "argument -s/--set-delay: expected one argument")
        #expect(error("-f") == "argument -f/--fields: expected one argument")
        #expect(error("-s", "abc") == "argument -s/--set-delay: invalid float value: 'abc'")
        #expect(error("-p", "1.5") == "argument -p/--pid: invalid int value: '1.5'")
        #expect(error("--d")
                == "ambiguous option: --d could match --debugfs, --debugfs-include-past")
        #expect(error("--once=1") == "argument -1/--once/--batch: ignored explicit argument '1'")
        #expect(error("-dq") == "argument -d/--debugfs: ignored explicit argument 'q'")
    }

    @Test func helpWinsWhereArgparseStops() throws {
        #expect(try parse("-h", "--bogus").help)
        #expect(try parse("-dh", "-s", "abc").help)
        #expect(error("--bogus", "-h") == nil)  // argparse too reports -h first
    }

    @Test func upstreamOptionsKeepTheirPrefixes() throws {
        #expect(try parse("--f", "kvm_exit").fields == "kvm_exit")
        #expect(try parse("--fo", "csv").format == "csv")
        #expect(error("--ar") == "ambiguous option: --ar could match --arch-info, --arch")
    }

    @Test func laterOfGuestAndPidWinsAndEveryGuestIsLookedUp() throws {
        let pidLast = try parse("-g", "vm1", "-p", "42")
        #expect(pidLast.guests == ["vm1"] && !pidLast.guestWins && pidLast.pid == 42)
        let guestLast = try parse("-p", "42", "-g", "vm1")
        #expect(guestLast.guests == ["vm1"] && guestLast.guestWins)
        let twice = try parse("-g", "vm1", "-p", "42", "-g", "vm2")
        #expect(twice.guests == ["vm1", "vm2"] && twice.guestWins)
    }

    @Test func exactLongNameBeatsPrefix() throws {
        #expect(try parse("--debugfs").debugfs)
        #expect(try parse("--arch", "x86").arch == "x86")
        #expect(try parse("--arch-info").archInfo)
    }
}
