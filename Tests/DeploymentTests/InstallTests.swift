import Foundation
import Testing
import TestSupport
@testable import FenceConfig

/// `Deploy/install.sh` into a staging root, the units it installs, and `--uninstall`. The binaries
/// are this build's (`--prebuilt`); `Deploy/run-tests.sh` also runs the release build of the script.
@Suite("Install")
struct InstallTests {
    static let script = Fixtures.repository.appendingPathComponent("Deploy/install.sh").path
    static let systemd: [Prerequisite] = [.command("systemd-analyze", package: "systemd")]

    func files(under root: URL) -> [String] {
        let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])
        var found: [String] = []
        while let url = enumerator?.nextObject() as? URL {
            if (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true {
                found.append(String(url.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count)))
            }
        }
        return found.sorted()
    }

    @Test("installs binaries, man pages, units, the firewalld service and the examples; --uninstall removes exactly those")
    func installAndUninstall() async throws {
        let root = try TemporaryDirectory(prefix: "fr-install")
        let bin = Products.directory.path
        // Something of the operator's own beside it, which neither step may touch.
        let configuration = try root.write("etc/fence_virt.conf", "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\n")

        let installed = try await Command.run([Self.script, "--prebuilt", bin, "--destdir", root.url.path])
        #expect(installed.status == 0, "\(installed)")
        let expected = [
            "/etc/fence_virt.conf",
            "/usr/lib/firewalld/services/fence-router.xml",
            "/usr/lib/systemd/system/fence-hostd.service", "/usr/lib/systemd/system/fence-routerd.service",
            "/usr/sbin/fence-hostd", "/usr/sbin/fence-routerd", "/usr/sbin/fencectl",
            "/usr/share/bash-completion/completions/fence-hostd", "/usr/share/bash-completion/completions/fence-routerd",
            "/usr/share/bash-completion/completions/fencectl",
            "/usr/share/doc/fence-router/examples/fence_virt.conf.multi-host",
            "/usr/share/doc/fence-router/examples/fence_virt.conf.single-host",
            "/usr/share/doc/fence-router/examples/systemd/protect-home-read-only.conf",
            "/usr/share/doc/fence-router/installed-files",
            "/usr/share/man/man5/fence-router.conf.5.gz",
            "/usr/share/man/man8/fence-hostd.8.gz", "/usr/share/man/man8/fence-routerd.8.gz", "/usr/share/man/man8/fencectl.8.gz",
            "/usr/share/zsh/vendor-completions/_fence-daemon", "/usr/share/zsh/vendor-completions/_fencectl",
        ]
        #expect(files(under: root.url) == expected)
        let manifest = try String(contentsOfFile: root.path("usr/share/doc/fence-router/installed-files"), encoding: .utf8)
        #expect(manifest.split(separator: "\n").map(String.init).sorted() == expected.filter { !$0.hasPrefix("/etc/") && !$0.hasSuffix("installed-files") })
        let mode = try FileManager.default.attributesOfItem(atPath: root.path("usr/sbin/fence-routerd"))[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o755)
        let page = try await Command.run(["sh", "-c", "zcat \(root.path("usr/share/man/man8/fencectl.8.gz"))"])
        #expect(page.output.contains(".SH NAME\nfencectl \\- "), "\(page)")
        #expect(page.output.contains("fencectl config check"), "every command's help is in the page")
        // The completions load and complete: fencectl's subcommands, the daemons' options.
        let completion = try await Command.run(["bash", "-c", """
            source \(root.path("usr/share/bash-completion/completions/fencectl"))
            source \(root.path("usr/share/bash-completion/completions/fence-routerd"))
            COMP_WORDS=(fence-routerd --ver); COMP_CWORD=1; _fence_daemon; echo "${COMPREPLY[@]}"
            complete -p fencectl
            """])
        #expect(completion.status == 0 && completion.output.contains("--version") && completion.output.contains("fencectl"), "\(completion)")
        let conf = try await Command.run(["sh", "-c", "LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l \(root.path("usr/share/man/man5/fence-router.conf.5.gz"))"])
        #expect(conf.status == 0 && conf.error.isEmpty, "fence-router.conf(5) renders without a warning: \(conf)")
        // Every key the daemons read, from the lists their readers take (a key added without its
        // row in Docs/configuration.md fails here), the prefixed ones (url1, uri1) by their first:
        // in the page's source, a table row's tag (the line after .TP) or a line of the groups
        // example, so that a key that is also a word of the prose (name, port) is not found there.
        let source = try await Command.check(["sh", "-c", "zcat \(root.path("usr/share/man/man5/fence-router.conf.5.gz"))"]).output
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
        let tags = zip(lines, lines.dropFirst()).filter { $0.0 == ".TP" }.map(\.1)
        let example = lines.filter { $0.hasPrefix("\t") }.map { $0.drop { $0 == "\t" } }
        let keys = DaemonSettings.keys + MulticastListenerSettings.keys + TCPListenerSettings.keys + amqpBlockKeys
            + MetricsSettings.keys + RouterConfiguration.groupKeys + ["uri"]
        for key in Set(keys) {
            #expect(tags.contains { $0.contains("\\fB\(key)\\fR") } || example.contains { $0.hasPrefix("\(key) = ") },
                    "fence-router.conf(5) has a row for \(key)")
        }
        for program in ["fence-routerd", "fence-hostd", "fencectl"] {
            let file = root.path("usr/share/man/man8/\(program).8.gz")
            let rendered = try await Command.run(["sh", "-c", "LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l \(file)"])
            #expect(rendered.status == 0 && rendered.error.isEmpty, "man -l \(program) renders without a warning: \(rendered)")
            for section in ["FILES", "SIGNALS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"] {
                #expect(rendered.output.contains("\n\(section)\n"), "\(program)(8) has \(section)")
            }
        }

        let removed = try await Command.run([Self.script, "--uninstall", "--destdir", root.url.path])
        #expect(removed.status == 0, "\(removed)")
        #expect(files(under: root.url) == ["/etc/fence_virt.conf"])
        #expect(FileManager.default.fileExists(atPath: configuration))
        let again = try await Command.run([Self.script, "--uninstall", "--destdir", root.url.path])
        #expect(again.status == 1 && again.error.contains("not installed"), "\(again)")
    }

    @Test("the installed units pass systemd-analyze verify without a single remark", .enabled(if: TestEnvironment.shouldRun(systemd)))
    func unitsVerify() async throws {
        try TestEnvironment.require(Self.systemd)
        let root = try TemporaryDirectory(prefix: "fr-units")
        try await Command.check([Self.script, "--prebuilt", Products.directory.path, "--destdir", root.url.path])
        // verify checks that ExecStart exists and that the man pages in Documentation= open: point
        // both into the staging root.
        var units: [String] = []
        for unit in ["fence-routerd.service", "fence-hostd.service"] {
            let text = try String(contentsOfFile: root.path("usr/lib/systemd/system/\(unit)"), encoding: .utf8)
            #expect(text.contains("Type=notify") && text.contains("WatchdogSec=") && text.contains("ProtectSystem=strict"))
            units.append(try root.write("check/\(unit)", text.replacingOccurrences(of: "/usr/sbin/", with: root.path("usr/sbin") + "/"), mode: 0o644))
        }
        let verified = try await Command.run(["systemd-analyze", "verify"] + units, environment: ["MANPATH": root.path("usr/share/man")])
        #expect(verified.status == 0, "\(verified)")
        #expect(verified.output.isEmpty && verified.error.isEmpty, "systemd-analyze has remarks: \(verified)")
    }
}
