import Foundation
import Testing
import TestSupport

/// The Debian package (`Deploy/package/deb.sh`): its fields, its files, its maintainer scripts and
/// lintian. `Deploy/run-tests.sh` builds the package from the release build before the tests and
/// names it in FENCE_ROUTER_TEST_PACKAGE (the boot check then installs that same file); without
/// it, the test builds one from install.sh's release build in `.build/install`
/// (`Deploy/install.sh --destdir DIR` makes it). Never from this build's own binaries: they link
/// the toolchain's Swift runtime, which no Debian package provides, and deb.sh refuses them.
@Suite("Debian package")
struct PackageTests {
    static let script = Fixtures.repository.appendingPathComponent("Deploy/package/deb.sh").path
    static let release = Fixtures.repository.appendingPathComponent(".build/install/release").path
    static let given = ProcessInfo.processInfo.environment["FENCE_ROUTER_TEST_PACKAGE"]
    static let tools: [Prerequisite] = [
        .command("dpkg-deb", package: "dpkg"), .command("dpkg-shlibdeps", package: "dpkg-dev"),
        .command("dpkg-gencontrol", package: "dpkg-dev"), .command("readelf", package: "binutils"),
    ]
    static let packaging: [Prerequisite] = {
        var needed = PackageTests.tools + [.command("lintian", package: "lintian")]
        if let given = PackageTests.given {
            needed.append(.file(given, madeBy: "Deploy/run-tests.sh names the package it built"))
        } else {
            for program in ["fence-routerd", "fence-hostd", "fencectl"] {
                needed.append(.file("\(PackageTests.release)/\(program)", madeBy: "the release build: Deploy/install.sh --destdir /tmp/stage"))
            }
        }
        return needed
    }()

    /// What the package installs: install.sh's files without its list, and Debian's copyright,
    /// changelog and lintian overrides.
    static let expected = [
        "/usr/lib/firewalld/services/fence-router.xml",
        "/usr/lib/systemd/system/fence-hostd.service", "/usr/lib/systemd/system/fence-routerd.service",
        "/usr/sbin/fence-hostd", "/usr/sbin/fence-routerd", "/usr/sbin/fencectl",
        "/usr/share/bash-completion/completions/fence-hostd", "/usr/share/bash-completion/completions/fence-routerd",
        "/usr/share/bash-completion/completions/fencectl",
        "/usr/share/doc/fence-router/changelog.gz", "/usr/share/doc/fence-router/copyright",
        "/usr/share/doc/fence-router/examples/fence_virt.conf.multi-host",
        "/usr/share/doc/fence-router/examples/fence_virt.conf.single-host",
        "/usr/share/doc/fence-router/examples/systemd/protect-home-read-only.conf",
        "/usr/share/lintian/overrides/fence-router",
        "/usr/share/man/man5/fence-router.conf.5.gz",
        "/usr/share/man/man8/fence-hostd.8.gz", "/usr/share/man/man8/fence-routerd.8.gz", "/usr/share/man/man8/fencectl.8.gz",
        "/usr/share/zsh/vendor-completions/_fence-daemon", "/usr/share/zsh/vendor-completions/_fencectl",
    ].sorted()

    /// The regular files `dpkg-deb --contents` lists, as absolute paths.
    func files(in listing: String) -> [String] {
        listing.split(separator: "\n").filter { $0.hasPrefix("-") }.compactMap { line in
            line.split(whereSeparator: \.isWhitespace).last.map { String($0.dropFirst()) }
        }.sorted()
    }

    @Test("refuses binaries that link the Swift runtime dynamically, as this build's do", .enabled(if: TestEnvironment.shouldRun(tools)))
    func refusesDynamicSwiftRuntime() async throws {
        try TestEnvironment.require(Self.tools)
        let fencectl = try Products.path("fencectl")
        let linked = try await Command.check(["readelf", "-d", fencectl])
        // A test build made with --static-swift-stdlib has nothing to refuse.
        guard linked.output.contains("[libswiftCore.so]") else { return }
        let output = try TemporaryDirectory(prefix: "fr-deb-debug")
        let refused = try await Command.run([Self.script, "--prebuilt", Products.directory.path, "--output", output.url.path])
        #expect(refused.status == 1 && refused.error.contains("links the Swift runtime dynamically"), "\(refused)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.url.path).isEmpty, "no package was written")
    }

    @Test(
        "holds the programs, units, firewalld service, man pages, completions and examples; Version is the programs' own, Depends from their libraries; the daemons linked as Package.swift says; nothing under /etc; no lintian error",
        .enabled(if: TestEnvironment.shouldRun(packaging))
    )
    func package() async throws {
        try TestEnvironment.require(Self.packaging)
        let scratch = try TemporaryDirectory(prefix: "fr-deb")
        let deb: String
        if let given = Self.given {
            deb = given
        } else {
            let built = try await Command.run([Self.script, "--prebuilt", Self.release, "--output", scratch.url.path])
            try #require(built.status == 0, "\(built)")
            deb = built.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        // The packaged fencectl says which version it is (BuildInfo's); the package must say the same.
        let root = scratch.path("root")
        try await Command.check(["dpkg-deb", "--extract", deb, root])
        let reported = try await Command.check(["\(root)/usr/sbin/fencectl", "--version"]).output
        let version = reported.split(whereSeparator: \.isWhitespace).dropFirst().first.map(String.init) ?? ""
        let arch = try await Command.check(["dpkg", "--print-architecture"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!version.isEmpty, "fencectl --version: \(reported)")
        #expect((deb as NSString).lastPathComponent == "fence-router_\(version)_\(arch).deb", "\(deb)")

        var fields: [String: String] = [:]
        for name in ["Package", "Version", "Architecture", "Depends", "Section", "Maintainer", "Description", "Installed-Size"] {
            fields[name] = try await Command.check(["dpkg-deb", "--field", deb, name]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(fields["Package"] == "fence-router")
        #expect(fields["Version"] == version)
        #expect(fields["Architecture"] == arch)
        let depends = fields["Depends"] ?? ""
        for library in ["libvirt0", "libqpid-proton", "libssl3", "libc6"] {
            #expect(depends.contains(library), "Depends names \(library): \(depends)")
        }
        #expect(!depends.contains("swift"), "the Swift runtime is linked in, not depended on: \(depends)")
        // The daemons linked as Package.swift's releaseLinking says: no function exported, relative
        // relocations packed where this machine's glibc loads them (2.36 and later), and then
        // Depends asks for that glibc (dpkg-shlibdeps does not count the symbol-less version); the
        // functions without a name laid out together (text-layout.ld), which needs a function
        // per section (Deploy/build/release.sh's flags).
        let glibc = try await Command.check(["getconf", "GNU_LIBC_VERSION"]).output  // "glibc 2.36"
        let release = glibc.split(whereSeparator: \.isWhitespace).last?.split(separator: ".").compactMap { Int($0) } ?? []
        let packs = !release.lexicographicallyPrecedes([2, 36])
        for program in ["fence-routerd", "fence-hostd"] {
            let dynamic = try await Command.check(["readelf", "--dynamic", "--dyn-syms", "--wide", "\(root)/usr/sbin/\(program)"]).output
            let exported = dynamic.split(separator: "\n").filter { $0.contains(" FUNC ") && !$0.contains(" UND ") }
            #expect(exported.isEmpty, "\(program) exports \(exported.count) functions, as linked with -export-dynamic")
            #expect(dynamic.contains("(RELR)") == packs, "\(program): relocations packed where \(glibc) loads them")
            let sections = try await Command.check(["readelf", "--section-headers", "--wide", "\(root)/usr/sbin/\(program)"]).output
            #expect(sections.contains(" .text.unnamed "), "\(program): no .text.unnamed section: compiled without -function-sections or linked without text-layout.ld")
        }
        if packs {
            #expect(depends.contains("libc6 (>= 2.36)"), "Depends asks for the glibc that loads packed relocations: \(depends)")
        }
        for name in ["Section", "Maintainer", "Description", "Installed-Size"] {
            #expect(fields[name]?.isEmpty == false, "\(name) is set")
        }

        let listing = try await Command.check(["dpkg-deb", "--contents", deb]).output
        #expect(files(in: listing) == Self.expected)
        #expect(!listing.contains(" ./etc/"), "the package owns nothing under /etc, /etc/fence_virt.conf least of all: \(listing)")
        for program in ["fence-routerd", "fence-hostd", "fencectl"] {
            #expect(FileManager.default.isExecutableFile(atPath: "\(root)/usr/sbin/\(program)"), "\(program) is executable")
        }

        // Maintainer scripts: systemd told of the units, nothing enabled or started; no conffile.
        let control = scratch.path("control")
        try await Command.check(["dpkg-deb", "--control", deb, control])
        for script in ["preinst", "postinst", "prerm", "postrm"] {
            #expect(FileManager.default.isExecutableFile(atPath: "\(control)/\(script)"), "\(script) is in the package")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(control)/conffiles"), "no conffile: nothing under /etc")
        let postinst = try String(contentsOfFile: "\(control)/postinst", encoding: .utf8)
            .split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }.joined(separator: "\n")
        #expect(postinst.contains("daemon-reload"), "the postinst reloads systemd")
        for call in ["helper enable", "invoke start", "invoke restart", "systemctl enable", "systemctl start"] {
            #expect(!postinst.contains(call), "the postinst enables and starts nothing: \(call)")
        }

        let lintian = try await Command.run(["lintian", "--fail-on", "error", deb])
        let errors = lintian.output.split(separator: "\n").filter { $0.hasPrefix("E: ") }
        #expect(lintian.status == 0 && errors.isEmpty, "lintian: \(lintian)")
    }
}
