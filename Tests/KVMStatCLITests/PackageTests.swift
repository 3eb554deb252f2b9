import Foundation
import KVMTestSupport
import Testing

/// The Debian package from `Scripts/package`, checked with Debian's own tools: dpkg into a
/// throw-away root, run where the Swift toolchain is hidden, lintian, systemd-analyze,
/// bash completion, logrotate against a running kvmstat.
@Suite(.serialized,
       .enabled(if: Kernel.required || PackageTools.installed,
                "needs dpkg-deb, lintian, systemd-analyze, logrotate and bash-completion (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"))
struct PackageTests {
    /// The package, built once for the suite.
    static let built: Result<String, PackageTools.Failure> = PackageTools.build()

    private var deb: String { get throws { try Self.built.get() } }

    @Test func contentsAndDependencies() throws {
        let deb = try deb
        let listing = try run("/usr/bin/dpkg-deb", ["-c", deb]).stdout
        for path in ["./usr/bin/kvmstat", "./usr/share/man/man1/kvmstat.1.gz", "./lib/systemd/system/kvmstat.service",
                     "./lib/systemd/system/kvmstat-exporter.service", "./etc/logrotate.d/kvmstat",
                     "./usr/share/bash-completion/completions/kvmstat", "./usr/share/zsh/vendor-completions/_kvmstat",
                     "./usr/share/fish/vendor_completions.d/kvmstat.fish", "./usr/share/doc/kvmstat/copyright",
                     "./usr/share/kvmstat/kvmstat-dashboard.json", "./usr/share/kvmstat/kvmstat-rules.yml"] {
            #expect(listing.contains(" \(path)\n"), "\(path) in the package")
        }
        // No invented maintainer: the builder's DEBEMAIL, else a plain placeholder.
        let maintainer = try run("/usr/bin/dpkg-deb", ["-f", deb, "Maintainer"]).stdout
        if ProcessInfo.processInfo.environment["DEBEMAIL"] == nil {
            #expect(maintainer == "Unknown Packager <packager@unknown.invalid>\n", "\(maintainer)")
        }
        let depends = try run("/usr/bin/dpkg-deb", ["-f", deb, "Depends"]).stdout
        // Each with the version its symbols need: `libc6 (>= 2.34)`.
        #expect(depends.contains("libc6 (>= 2."), "\(depends)")
        let packages = Set(depends.split(separator: ",").map {
            String($0.split(separator: "(")[0]).trimmingCharacters(in: .whitespacesAndNewlines)
        })
        #expect(packages.isSuperset(of: ["libc6", "libncursesw6", "libstdc++6"]), "\(depends)")
        #expect(packages.isSubset(of: ["libc6", "libncursesw6", "libstdc++6", "libgcc-s1", "libtinfo6", "zlib1g"]),
                "\(depends)")
        #expect(try run("/usr/bin/dpkg-deb", ["-f", deb, "Suggests"]).stdout == "libvirt0\n")
    }

    /// `dpkg -i` into a throw-away root; there, with the toolchain's directory hidden in a
    /// mount namespace, `kvmstat -1`, `--arch-info` and `man kvmstat` work, and
    /// systemd-analyze accepts the units.
    @Test func installsAndRunsWithoutTheToolchain() throws {
        let root = NSTemporaryDirectory() + "kvmstat-root-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: root) }
        for directory in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
            try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
        }
        for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
            _ = FileManager.default.createFile(atPath: root + "/" + file, contents: Data())
        }
        let installed = try run("/usr/bin/dpkg", ["--root=\(root)", "--force-depends", "--force-script-chrootless", "-i", try deb])
        #expect(installed.status == 0, "\(installed.stdout)\(installed.stderr)")
        let script = """
            set -e
            mount -t overlay overlay -o lowerdir=\(root)/usr:/usr /usr
            mount -t overlay overlay -o lowerdir=\(root)/lib:/lib /lib
            mount -t tmpfs none /opt/swift
            echo "toolchain entries: $(ls /opt/swift | wc -l)"
            echo "swift libraries: $(ldd /usr/bin/kvmstat | grep -c swift || true)"
            kvmstat --arch-info --arch riscv | head -1
            KVMSTAT_DEBUGFS=\(root)/nodebugfs kvmstat -1 -d 2>&1 | head -1 || true
            kvmstat -1 -f '^kvm_pio$'
            MANPAGER=cat man kvmstat | grep -c 'kvmstat'
            systemd-analyze verify /lib/systemd/system/kvmstat.service /lib/systemd/system/kvmstat-exporter.service
            echo verified
            """
        let result = try run("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/bash", "-c", script])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("toolchain entries: 0\n") && result.stdout.contains("swift libraries: 0\n"), "\(result.stdout)")
        #expect(result.stdout.contains("Architecture:             riscv"), "\(result.stdout)")
        #expect(result.stdout.contains("kvm_pio "), "\(result.stdout)")
        #expect(result.stdout.hasSuffix("verified\n"), "\(result.stdout)\(result.stderr)")
    }

    /// lintian: no errors, and (today) no warnings either; accepted warnings would be listed
    /// here with the reason.
    @Test func lintianFindsNoErrors() throws {
        let result = try run("/usr/bin/lintian", ["--fail-on", "error,warning", "--tag-display-limit", "0", try deb])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    /// The completions come from the option table: every option `--help` shows is in each
    /// shell's script, and bash completes a prefix and a `--format` value.
    @Test func completionsCoverEveryOptionAndLoadInBash() throws {
        let help = try run(kvmstatBinary, ["--help"]).stdout
        let options = Set(help.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" })
            .filter { $0.hasPrefix("--") && $0.count > 2 }.map(String.init))
        #expect(options.contains("--listen") && options.contains("--format"))
        for shell in ["bash", "zsh", "fish"] {
            let script = try run(kvmstatBinary, ["--completions", shell]).stdout
            for option in options {
                let spelled = shell == "fish" ? "-l \(option.dropFirst(2))" : option
                #expect(script.contains(spelled), "\(shell) lacks \(option)")
            }
        }
        let file = NSTemporaryDirectory() + "kvmstat-completion-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: file) }
        try run(kvmstatBinary, ["--completions", "bash"]).stdout.write(toFile: file, atomically: false, encoding: .utf8)
        let bash = try run("/bin/bash", ["-c", """
            source /usr/share/bash-completion/bash_completion 2>/dev/null || true
            source \(file)
            complete -p kvmstat
            COMP_WORDS=(kvmstat --form); COMP_CWORD=1; _kvmstat; echo "prefix: ${COMPREPLY[*]}"
            COMP_WORDS=(kvmstat --format pro); COMP_CWORD=2; _kvmstat; echo "value: ${COMPREPLY[*]}"
            """])
        #expect(bash.stdout.contains("complete -F _kvmstat kvmstat"), "\(bash.stdout)\(bash.stderr)")
        #expect(bash.stdout.contains("prefix: --format\n") && bash.stdout.contains("value: prometheus\n"), "\(bash.stdout)")
    }

    /// The shipped logrotate snippet (its path and signal pointed at the test's kvmstat)
    /// rotates a running kvmstat's CSV log: the deltas of both files add up to exactly what
    /// the counter moved — no record lost, none written twice.
    @Test func logrotateLosesNoRecord() throws {
        let tree = try FakeTree(fields: ["exits"])
        let directory = NSTemporaryDirectory() + "kvmstat-rotate-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/kvmstat.csv"
        let kvmstat = try BackgroundKvmstat(["-d", "-c", "-L", log, "-s", "0.1"], environment: tree.environment)
        let counter = tree.kvm + "/100-5/exits"
        func set(_ value: Int) throws {
            // Replaced whole (renamed over), as a reader must never see a half-written number.
            try "\(value)\n".write(toFile: counter + ".new", atomically: false, encoding: .utf8)
            rename(counter + ".new", counter)
        }
        while ((try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 2 { usleep(20_000) }
        let shipped = try String(contentsOfFile: "Packaging/kvmstat.logrotate", encoding: .utf8)
        let config = shipped.replacing("/var/log/kvmstat.csv", with: log)
            .replacing(#/systemctl reload [^\n]*/#, with: "kill -HUP \(kvmstat.pid)")
        try config.write(toFile: directory + "/logrotate.conf", atomically: false, encoding: .utf8)
        for step in 1...600 {
            try set(7 + step)
            if step == 300 {
                let rotated = try run("/usr/sbin/logrotate", ["-f", "-s", directory + "/state", directory + "/logrotate.conf"])
                #expect(rotated.status == 0, "\(rotated.stderr)")
            }
            usleep(5_000)
        }
        usleep(500_000)
        kvmstat.signal(SIGINT)
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let old = try String(contentsOfFile: log + ".1", encoding: .utf8)
        let new = try String(contentsOfFile: log, encoding: .utf8)
        #expect(new.hasPrefix("timestamp,exits\n") && old.hasSuffix("\n") && new.hasSuffix("\n"))
        let deltas = (old + new).split(separator: "\n").filter { !$0.hasPrefix("timestamp") }
            .compactMap { Int($0.split(separator: ",").last ?? "") }
        #expect(deltas.reduce(0, +) == 600, "\(deltas)")
    }
}

/// Debian's tools for the package tests, and the package built once.
enum PackageTools {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static var installed: Bool {
        ["/usr/bin/dpkg-deb", "/usr/bin/lintian", "/usr/bin/systemd-analyze", "/usr/sbin/logrotate",
         "/usr/share/bash-completion/bash_completion"].allSatisfy { FileManager.default.fileExists(atPath: $0) }
    }

    static func build() -> Result<String, Failure> {
        let out = ".build/package-tests"
        guard let result = try? run("Scripts/package", ["--out", out]), result.status == 0 else {
            return .failure(Failure(description: "Scripts/package failed"))
        }
        return .success(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
