#!/usr/bin/perl
# slowloris.pl PORT N_LOCAL N_OTHER SECONDS STATUS: opens N_LOCAL connections to
# 127.0.0.1:PORT from 127.0.0.1 and N_OTHER from 127.0.0.2 (another client address on the
# loopback), then trickles an HTTP request into each, one byte every 2 s, never finishing its
# headers. Every 0.25 s it rewrites STATUS with "TICK OPEN_LOCAL OPEN_OTHER" (connections the
# server has not closed). Stops after SECONDS. Perl because perl-base is Essential on Debian.
use strict;
use warnings;
use IO::Socket::INET;

my ($port, $n_local, $n_other, $seconds, $status) = @ARGV;
die "usage: slowloris.pl PORT N_LOCAL N_OTHER SECONDS STATUS\n" unless defined $status;
$SIG{PIPE} = 'IGNORE';
my $req = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " . ("a" x 4096);
my @conns;    # [socket, is_local, bytes sent]

sub open_one {
    my ($local) = @_;
    my %a = (PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 2);
    $a{LocalAddr} = '127.0.0.2' unless $local;
    my $s = IO::Socket::INET->new(%a) or return;
    $s->blocking(0);
    push @conns, [$s, $local, 0];
}
open_one(1) for 1 .. $n_local;
open_one(0) for 1 .. $n_other;

sub trickle {
    for my $c (@conns) {
        next unless $c->[0];
        my $n = syswrite($c->[0], substr($req, $c->[2] % length($req), 1));
        if (defined $n) { $c->[2] += $n } else { close($c->[0]); $c->[0] = undef }
    }
}

# A connection is closed when a read returns end-of-file or an error other than EAGAIN.
sub reap {
    for my $c (@conns) {
        next unless $c->[0];
        my $buf;
        my $n = sysread($c->[0], $buf, 4096);
        next if !defined $n && ($!{EAGAIN} || $!{EWOULDBLOCK});
        next if defined $n && $n > 0;
        close($c->[0]);
        $c->[0] = undef;
    }
}

sub report {
    my ($tick) = @_;
    my ($l, $o) = (0, 0);
    for my $c (@conns) {
        next unless $c->[0];
        if ($c->[1]) { $l++ } else { $o++ }
    }
    open(my $f, '>', "$status.tmp") or die "$status.tmp: $!\n";
    print $f "$tick $l $o\n";
    close($f);
    rename("$status.tmp", $status) or die "rename: $!\n";
}

trickle();
for my $tick (1 .. $seconds * 4) {
    select(undef, undef, undef, 0.25);
    reap();
    trickle() if $tick % 8 == 0;
    report($tick);
}
