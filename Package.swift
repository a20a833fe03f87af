// swift-tools-version:6.2
import PackageDescription

#if canImport(Glibc)
import Glibc
#endif

/// How a shipped daemon's release build is linked, for less resident memory (Docs/benchmarks.md,
/// "Memory"): with lld, which lays out first the functions that have no name
/// (Deploy/build/text-layout.ld), then the code the daemon runs (the sections holding the functions
/// in Deploy/build/PROGRAM.order, written by Benchmarks/function-order.sh), so fewer of the blocks
/// the kernel maps code in are touched (this needs each function in a section of its own: the
/// flags in Deploy/build/release.sh); without a dynamic symbol table of our own
/// functions (the Swift runtime's link arguments ask for one, which nothing here looks up); with
/// relative relocations packed (DT_RELR: 8 KB read at start instead of 1 MB) where the building
/// machine's glibc loads them (2.36 and later; the binaries then need it too, as for any symbol
/// version: build on the oldest glibc deployed to). SwiftPM does not know the link reads the lists
/// and the script: after changing one, remove the binaries (Benchmarks/function-order.sh does).
func releaseLinking(_ program: String) -> [LinkerSetting] {
    var flags = [
        "-use-ld=lld", "-Xlinker", "--no-export-dynamic",
        "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Deploy/build/\(program).order",
        "-Xlinker", "--no-warn-symbol-ordering",
        "-Xlinker", "-T", "-Xlinker", "\(Context.packageDirectory)/Deploy/build/text-layout.ld",
    ]
    #if canImport(Glibc)
    var release = [CChar](repeating: 0, count: 64)  // "glibc 2.36"
    confstr(Int32(_CS_GNU_LIBC_VERSION), &release, release.count)
    let text = String(decoding: release.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let version = text.split(separator: " ").last?.split(separator: ".").compactMap { Int($0) } ?? []
    if !version.lexicographicallyPrecedes([2, 36]) {
        flags += ["-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"]
    }
    #endif
    return [.unsafeFlags(flags, .when(platforms: [.linux], configuration: .release))]
}

let package = Package(
    name: "fence-router",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fence-routerd", targets: ["fence-routerd"]),
        .executable(name: "fence-hostd", targets: ["fence-hostd"]),
        .executable(name: "fencectl", targets: ["fencectl"]),
    ],
    // Each exact; the packages these bring in are pinned by Deploy/build/dependencies.txt, which
    // run-tests.sh and every release build check the resolved graph against (named here, SwiftPM
    // would warn them unused).
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        // The version, and the git commit recorded at build time by the GitCommit plugin.
        .plugin(name: "GitCommit", capability: .buildTool()),
        .target(name: "BuildInfo", plugins: ["GitCommit"]),
        // OpenSSL's libcrypto, once, and what we use from it: digests, HMAC, random bytes.
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "Cryptography", dependencies: ["COpenSSL"]),
        // The fence_xvm wire protocol: pure values, no I/O.
        .target(name: "FenceWire", dependencies: ["Cryptography"]),
        // The fence_virt.conf grammar and the typed settings read from it.
        .target(name: "FenceConfig", dependencies: ["FenceWire"]),
        // Domains, actions, outcomes, the backend protocol and the single-host fencing rules.
        .target(name: "FenceCore", dependencies: [.product(name: "Logging", package: "swift-log")]),
        // Deadline-bounded waits for results that arrive from C threads (libvirt, Proton).
        .target(name: "CallbackWaits"),
        // Threads of their own for requests whose steps block (sockets driven with poll(2), libvirt calls).
        .target(name: "RequestThreads"),
        // libvirt: the C library once, then one thin Swift owner of its handles.
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .target(
            name: "Libvirt",
            dependencies: [
                "CLibvirt", "FenceCore", "CallbackWaits", "RequestThreads",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Qpid Proton C (AMQP 1.0), once (its pkg-config file is broken for SwiftPM), then one thin
        // Swift owner of the proactor: connections, links, settlement, request/reply. It knows no fencing.
        .systemLibrary(name: "CProton", providers: [.apt(["libqpid-proton11-dev"])]),
        .target(
            name: "AMQP",
            dependencies: [
                "CProton", "CallbackWaits",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The bus schema: signed, versioned messages between routers and host agents. No I/O.
        // A JSON value kept exact (numbers as their text, keys in order), for the bus and state files.
        .target(name: "JSONValue"),
        .target(name: "FenceBus", dependencies: ["FenceCore", "Cryptography", "JSONValue"]),
        // The router's inventory and the routing rules. No I/O, no clock of its own.
        .target(name: "Routing", dependencies: ["FenceCore", "FenceBus"]),
        // The bus over AMQP: sealing, publishing, checking, replying, for routers and agents alike,
        // and how a daemon or fencectl joins it from its settings.
        .target(
            name: "BusClient",
            dependencies: [
                "FenceBus", "AMQP", "Cryptography", "DropReporting", "FenceConfig", "DaemonSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // fence-routerd's amqp backend: the inventory from the bus, routing, confirmed results.
        .target(
            name: "FenceRouter",
            dependencies: [
                "Routing", "BusClient", "FenceBus", "FenceCore", "AMQP", "JSONValue", "DropReporting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // fence-hostd's work: the inventory publisher and the command executor of one host.
        .target(
            name: "HostAgent",
            dependencies: [
                "BusClient", "FenceBus", "FenceCore", "Libvirt", "AMQP",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Rate-limited logging of dropped input: packets, bus messages.
        .target(
            name: "DropReporting",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The fence_xvm front end: listeners, call-back sessions, the request pipeline.
        .target(
            name: "FenceServer",
            dependencies: [
                "FenceWire", "FenceCore", "FenceConfig", "Cryptography", "DropReporting", "RequestThreads",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // glibc's malloc.h, for the daemons' allocator settings.
        .systemLibrary(name: "CMalloc"),
        // What every daemon of ours shares: command-line habits, pid file, key files, logging.
        .target(
            name: "DaemonSupport",
            dependencies: [
                "FenceWire", "FenceConfig", "CMalloc", "BuildInfo",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // GET /metrics over HTTP, from what the daemons count through swift-metrics.
        .target(
            name: "MetricsEndpoint",
            dependencies: [
                "BuildInfo",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "fence-routerd",
            dependencies: [
                "FenceWire", "FenceConfig", "FenceCore", "Libvirt", "FenceServer", "DaemonSupport", "FenceRouter", "DropReporting", "BusClient", "MetricsEndpoint",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            linkerSettings: releaseLinking("fence-routerd")
        ),
        .executableTarget(
            name: "fence-hostd",
            dependencies: [
                "FenceConfig", "HostAgent", "Libvirt", "DaemonSupport", "BusClient", "MetricsEndpoint",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: releaseLinking("fence-hostd")
        ),
        .executableTarget(
            name: "fencectl",
            dependencies: [
                "DaemonSupport", "FenceConfig", "BusClient", "FenceBus", "FenceCore", "Routing", "AMQP", "Cryptography", "JSONValue", "BuildInfo",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Measures fence-hostd through the broker (Benchmarks/bus.sh).
        .executableTarget(
            name: "fence-bus-bench",
            dependencies: ["AMQP", "BusClient", "Cryptography", "FenceBus", "FenceCore", "Libvirt", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/BusBench"
        ),
        // SIMULATION ONLY: many fake host agents for the router's scale benchmark (Benchmarks/routed.sh).
        .executableTarget(
            name: "fence-sim-hosts",
            dependencies: ["AMQP", "BusClient", "Cryptography", "FenceBus", "FenceCore", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/SimulatedHosts"
        ),

        // libFuzzer targets for the packet decoder, the conversation, fence_virt.conf and the bus
        // (Fuzz/run.sh builds them with -sanitize=fuzzer); a plain build replays inputs through them.
        .target(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),
        .executableTarget(
            name: "fence-fuzz",
            dependencies: ["FenceWire", "FenceConfig", "FenceBus", "Cryptography", "JSONValue", "CLibFuzzer"],
            path: "Fuzz/Sources"
        ),

        // Helpers shared by the test targets: fixtures, processes, network-namespace labs.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "FenceWireTests", dependencies: ["FenceWire", "Cryptography", "TestSupport"]),
        .testTarget(name: "DaemonSupportTests", dependencies: ["DaemonSupport", "TestSupport"]),
        .testTarget(name: "FencectlTests", dependencies: ["TestSupport"]),
        .testTarget(name: "DeploymentTests", dependencies: ["FenceConfig", "TestSupport"]),
        .testTarget(name: "FenceConfigTests", dependencies: ["FenceConfig", "FenceWire", "TestSupport"]),
        .testTarget(
            name: "FenceCoreTests",
            dependencies: ["FenceCore", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "CallbackWaitsTests", dependencies: ["CallbackWaits", "TestSupport"]),
        .testTarget(name: "RequestThreadsTests", dependencies: ["RequestThreads", "TestSupport"]),
        .testTarget(
            name: "LibvirtTests",
            dependencies: ["Libvirt", "FenceCore", "RequestThreads", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "FenceServerTests",
            dependencies: [
                "FenceServer", "FenceWire", "FenceCore", "FenceConfig", "DropReporting", "TestSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "EndToEndTests", dependencies: ["FenceWire", "TestSupport"]),
        .testTarget(name: "MultiHostTests", dependencies: ["TestSupport"]),
        .testTarget(
            name: "HostAgentTests",
            dependencies: [
                "AMQP", "BusClient", "Cryptography", "FenceBus", "FenceCore", "HostAgent", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "FenceBus", "FenceCore"]),
        .testTarget(name: "FenceRouterTests", dependencies: ["FenceRouter", "FenceBus", "Routing", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "FenceBusTests", dependencies: ["FenceBus", "BusClient", "FenceCore", "Cryptography", "JSONValue", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "AMQPTests",
            dependencies: [
                "AMQP", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
