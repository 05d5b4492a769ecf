title = Zamówienie wysłane
body = { $count ->
    [one] { $count } przedmiot jest w drodze, { $name }.
    [few] { $count } przedmioty są w drodze, { $name }.
   *[many] { $count } przedmiotów jest w drodze, { $name }.
}
