// swift-tools-version:6.0
// SPDX-License-Identifier: GPL-2.0-only
import PackageDescription

/// kvmstat: a monitor of KVM guests' exits and events, the successor of the kernel's kvm_stat.
/// No package dependencies: distributions build it offline.
let package = Package(
    name: "kvmstat",
    products: [
        .executable(name: "kvmstat", targets: ["kvmstat"]),
    ],
    targets: [
        // The only C in the package: syscalls Swift cannot call itself (variadic syscall/ioctl).
        .target(name: "CKVMSyscalls"),
        .target(name: "KVMCore", dependencies: ["CKVMSyscalls"]),
        // The interactive screen's terminal library: the system's ncursesw.
        .systemLibrary(
            name: "CNCurses",
            providers: [.apt(["libncurses-dev"]), .yum(["ncurses-devel"])]
        ),
        // The endpoint's gzip: the system's zlib.
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"]), .yum(["zlib-devel"])]
        ),
        .target(name: "KVMArchX86", dependencies: ["KVMCore"]),
        .target(name: "KVMArchARM64", dependencies: ["KVMCore"]),
        .target(name: "KVMArchPPC", dependencies: ["KVMCore"]),
        .target(name: "KVMArchS390", dependencies: ["KVMCore"]),
        .target(name: "KVMArchRISCV", dependencies: ["KVMCore"]),
        .target(name: "KVMArchLoongArch", dependencies: ["KVMCore"]),
        .target(name: "KVMSources", dependencies: ["KVMCore"]),
        .target(name: "KVMFormats", dependencies: ["KVMCore"]),
        // The program (options, checks, modes, the screen); it names no plugin.
        .target(name: "KVMStatApp", dependencies: ["KVMCore", "KVMSources", "KVMFormats", "CNCurses", "CZlib"]),
        // The one registration list of the built-in plugins, for the executable and the tests.
        .target(
            name: "KVMBuiltins",
            dependencies: [
                "KVMCore", "KVMArchX86", "KVMArchARM64", "KVMArchPPC", "KVMArchS390", "KVMArchRISCV", "KVMArchLoongArch",
                "KVMSources", "KVMFormats", "KVMStatApp",
            ]
        ),
        .executableTarget(name: "kvmstat", dependencies: ["KVMStatApp", "KVMBuiltins"]),
        // Real KVM guests with exactly known exit counts, for the tests and the benchmark.
        .target(name: "KVMWorkload", dependencies: ["KVMCore"]),
        .executableTarget(name: "kvmstat-workload", dependencies: ["KVMWorkload"]),
        // Shared by the test targets: starts the workload, knows whether real KVM is here.
        .target(name: "KVMTestSupport", dependencies: ["KVMCore"], path: "Tests/KVMTestSupport"),
        .testTarget(name: "KVMCoreTests", dependencies: ["KVMCore"]),
        .testTarget(
            name: "KVMSourcesTests",
            dependencies: ["KVMCore", "KVMSources", "KVMArchX86", "KVMArchS390", "KVMTestSupport",
                           "kvmstat-workload"]
        ),
        .testTarget(
            name: "KVMArchTests",
            dependencies: ["KVMCore", "KVMArchX86", "KVMArchARM64", "KVMArchPPC", "KVMArchS390",
                           "KVMBuiltins"]
        ),
        // kvmstat with a source and a format that exist only here: plugins stand alone.
        .executableTarget(
            name: "kvmstat-plugin-fixture",
            dependencies: ["KVMCore", "KVMSources", "KVMFormats", "KVMStatApp", "KVMBuiltins"],
            path: "Tests/PluginFixture"
        ),
        .testTarget(
            name: "KVMStatCLITests",
            dependencies: ["kvmstat", "kvmstat-workload", "kvmstat-plugin-fixture", "KVMCore",
                           "KVMStatApp", "KVMBuiltins", "KVMTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
